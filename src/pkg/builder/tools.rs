//! The host programs builders run, found before any work starts so that a missing one is
//! reported with the Debian package that provides it.

use std::path::{Path, PathBuf};

use crate::pkg::PkgError;

/// `name` on `PATH`, or in the sbin folders that a user's `PATH` often lacks.
pub fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// `name`, or an error naming `install` (what to install to get it).
pub fn require(name: &str, install: &str) -> Result<PathBuf, PkgError> {
    find(name).ok_or_else(|| PkgError::Usage(format!("{name} is not installed: {install}")))
}

/// A file that must exist, or an error naming what to install.
pub fn require_file(path: &Path, what: &str, install: &str) -> Result<(), PkgError> {
    if path.is_file() {
        Ok(())
    } else {
        Err(PkgError::Usage(format!(
            "{what} is not installed: {install}"
        )))
    }
}
