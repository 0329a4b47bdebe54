//! The builders that make a package's root filesystem for one architecture.

pub mod cargo;
pub mod debian;
pub mod files;
pub mod kernel;
pub mod tools;

use super::{Package, PkgError};
use crate::image::Arch;
use crate::pkg::manifest::Builder;
use crate::tree::Tree;

/// A built root filesystem and whatever its file bodies still live in.
pub struct RootFs {
    /// The tree.
    pub tree: Tree,
    /// Scratch space the tree's bodies point into; dropped after the image is written.
    pub scratch: Option<tempfile::TempDir>,
}

/// Check that the host has every program building `package` for `arch` needs.
pub fn preflight(package: &Package, arch: Arch) -> Result<(), PkgError> {
    match &package.manifest.builder {
        Builder::Files(_) => Ok(()),
        Builder::Debian(_) => debian::preflight(),
        Builder::Kernel(_) => {
            debian::preflight()?;
            tools::require("depmod", "apt-get install kmod").map(|_| ())
        }
        Builder::Cargo(spec) => cargo::preflight(spec, arch),
    }
}

/// The root filesystem of `package` for `arch`; `mtime` stamps every entry.
pub fn root_filesystem(package: &Package, arch: Arch, mtime: i64) -> Result<RootFs, PkgError> {
    match &package.manifest.builder {
        Builder::Files(entries) => Ok(RootFs {
            tree: files::build(package, entries, mtime)?,
            scratch: None,
        }),
        Builder::Debian(spec) => {
            let built = debian::build(package, spec, arch, mtime)?;
            Ok(RootFs {
                tree: built.tree,
                scratch: Some(built.scratch),
            })
        }
        Builder::Cargo(spec) => cargo::build(package, spec, arch, mtime),
        Builder::Kernel(spec) => {
            let built = kernel::build(package, spec, arch, mtime)?;
            Ok(RootFs {
                tree: built.tree,
                scratch: Some(built.scratch),
            })
        }
    }
}
