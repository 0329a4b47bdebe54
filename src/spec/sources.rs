//! The host file a `files` entry's `source` names: `~/` expanded, a relative path taken from
//! the directory of the spec file that wrote it, then resolved as LinuxKit reads it (symlinks
//! followed; only a regular file or a directory, see [`crate::tree::resolve_source`]).

use std::path::PathBuf;

use super::load::{LoadedSpec, SpecError};
use super::{FileSpec, Loc, Origin};
use crate::tree::{FromHostError, HostSource};

/// The host path `source` (written in `f`) names, before symlinks are followed.
pub fn host_path(loaded: &LoadedSpec, f: &FileSpec, source: &str) -> PathBuf {
    let path = match (source.strip_prefix("~/"), dirs::home_dir()) {
        (Some(rest), Some(home)) => home.join(rest),
        _ => PathBuf::from(source),
    };
    if path.is_relative() {
        loaded.base_dir(f.file).join(path)
    } else {
        path
    }
}

/// Resolve the `source` of `files[index]`. `Ok(None)` when the entry is `optional` and the
/// source cannot be read (missing, unreadable, a symlink loop); a source that is there but
/// cannot be copied (a FIFO, a device, a file of `/proc`) is an error even then.
pub fn resolve_source(
    loaded: &LoadedSpec,
    index: usize,
    f: &FileSpec,
    source: &Loc<String>,
) -> Result<Option<HostSource>, SpecError> {
    match crate::tree::resolve_source(&host_path(loaded, f, &source.value)) {
        Ok(resolved) => Ok(Some(resolved)),
        Err(FromHostError::Io { .. } | FromHostError::SymlinkLoop { .. }) if f.optional => Ok(None),
        Err(e) => Err(SpecError::Source {
            origin: Origin::of(loaded.file(f.file), source),
            key: format!("files[{index}].source"),
            source: e,
        }),
    }
}
