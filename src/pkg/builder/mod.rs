//! The builders that make a package's root filesystem for one architecture.

mod files;

use super::{Package, PkgError};
use crate::image::Arch;
use crate::pkg::manifest::Builder;
use crate::tree::Tree;

/// The root filesystem of `package` for `_arch` (the `files` builder makes the same tree for
/// every architecture); `mtime` stamps every entry.
pub fn root_filesystem(package: &Package, _arch: Arch, mtime: i64) -> Result<Tree, PkgError> {
    match &package.manifest.builder {
        Builder::Files(entries) => files::build(package, entries, mtime),
    }
}
