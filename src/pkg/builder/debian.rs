//! The `debian` builder: a root filesystem from Debian packages of the target architecture,
//! unpacked by `mmdebstrap --variant=extract` (no maintainer scripts, so foreign architectures
//! need no emulation), then cut down to the paths the program needs.

use std::path::Path;
use std::process::Command;

use crate::flatten::apply_layer;
use crate::image::Arch;
use crate::pkg::manifest::DebianBuilder;
use crate::pkg::{Package, PkgError};
use crate::tree::{Directory, Inode, Tree, TreePath};

/// The tree, and the scratch directory its file bodies live in (keep it until written).
pub struct Built {
    /// The root filesystem.
    pub tree: Tree,
    /// Holds the unpacked packages.
    pub scratch: tempfile::TempDir,
}

/// The Debian release packages come from unless a builder names another.
pub const DEFAULT_SUITE: &str = "bookworm";

fn preflight_path() -> Result<std::path::PathBuf, PkgError> {
    super::tools::require("mmdebstrap", "apt-get install mmdebstrap")
}

/// Check that mmdebstrap is there.
pub fn preflight() -> Result<(), PkgError> {
    preflight_path().map(|_| ())
}

/// Unpack `packages` (and what they depend on) of `arch` from Debian `suite` to `out`: a
/// directory, or a tar archive when `out` ends in `.tar`. `builder` names the caller in errors.
pub fn unpack(
    package: &Package,
    builder: &str,
    packages: &[String],
    arch: Arch,
    suite: &str,
    out: &Path,
    mtime: i64,
) -> Result<(), PkgError> {
    let output = Command::new(preflight_path()?)
        .args(["--variant=extract", "--architectures", arch.oci()])
        .arg(format!("--include={}", packages.join(",")))
        .arg(suite)
        .arg(out)
        .env("SOURCE_DATE_EPOCH", mtime.to_string())
        .output()
        .map_err(|e| PkgError::io(out, e))?;
    if output.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&output.stderr);
    let reason = first_error(&err).unwrap_or("failed");
    Err(PkgError::Usage(format!(
        "{}: {builder} builder for {arch}: mmdebstrap: {reason}",
        package.dir.join("build.yml").display()
    )))
}

/// The first error apt or mmdebstrap reported (apt's own, such as a package that does not
/// exist, comes before mmdebstrap's summary of it).
fn first_error(stderr: &str) -> Option<&str> {
    stderr
        .lines()
        .filter_map(|l| l.trim().strip_prefix("E: "))
        .find(|l| !l.starts_with("apt download failed") && !l.starts_with("mmdebstrap failed"))
        .or_else(|| stderr.lines().rev().find(|l| !l.trim().is_empty()))
}

/// Unpack `spec.include` for `arch` and keep what `spec.keep` selects.
pub fn build(
    package: &Package,
    spec: &DebianBuilder,
    arch: Arch,
    mtime: i64,
) -> Result<Built, PkgError> {
    let scratch = tempfile::Builder::new()
        .prefix("osbuild-debian-")
        .tempdir()
        .map_err(|e| PkgError::io(&std::env::temp_dir(), e))?;
    let out = scratch.path().join("rootfs.tar");
    let suite = spec.suite.as_deref().unwrap_or(DEFAULT_SUITE);
    unpack(package, "debian", &spec.include, arch, suite, &out, mtime)?;
    let mut tree = Tree::new(mtime);
    apply_layer(&mut tree, &out).map_err(|e| PkgError::Usage(e.to_string()))?;
    if !spec.keep.is_empty() {
        let keep: Vec<TreePath> = spec
            .keep
            .iter()
            .map(|k| TreePath::parse(k).map_err(|e| PkgError::Usage(format!("keep {k:?}: {e}"))))
            .collect::<Result<_, _>>()?;
        let mut path = TreePath::root();
        retain(&mut tree.root, &mut path, &keep);
    }
    stamp(&mut tree.root, mtime);
    super::files::add_files(
        &mut tree,
        package,
        &spec.files,
        "builder.debian.files",
        mtime,
    )?;
    super::files::add_links(
        &mut tree,
        package,
        &spec.links,
        "builder.debian.links",
        mtime,
    )?;
    Ok(Built { tree, scratch })
}

/// Keep entries that are, lead to, or lie under one of `keep`.
fn retain(dir: &mut Directory, path: &mut TreePath, keep: &[TreePath]) {
    dir.entries.retain(|name, inode| {
        path.push(name);
        let wanted = keep
            .iter()
            .any(|k| path.starts_with(k) || k.starts_with(path));
        let kept = wanted
            && match inode {
                Inode::Directory(sub) => {
                    if !keep.iter().any(|k| path.starts_with(k)) {
                        retain(sub, path, keep);
                    }
                    true
                }
                Inode::Leaf(_) => keep.iter().any(|k| path.starts_with(k)),
            };
        path.pop();
        kept
    });
}

/// Give every entry the build's time, so the image does not depend on when it was unpacked.
fn stamp(dir: &mut Directory, mtime: i64) {
    dir.meta.mtime = mtime;
    for inode in dir.entries.values_mut() {
        match inode {
            Inode::Directory(sub) => stamp(sub, mtime),
            Inode::Leaf(leaf) => std::sync::Arc::make_mut(leaf).meta.mtime = mtime,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::{Content, Leaf, LeafKind, Meta, dump};
    use std::sync::Arc;

    #[test]
    fn the_first_apt_error_is_reported() {
        let stderr = "I: running apt-get update...\nE: Unable to locate package nope\nE: apt download failed: E: apt-get --yes install nope failed\nE: mmdebstrap failed to run\n";
        assert_eq!(first_error(stderr), Some("Unable to locate package nope"));
        assert_eq!(first_error("odd\n\n"), Some("odd"));
    }

    #[test]
    fn keep_selects_paths_their_parents_and_everything_below() {
        let mut t = Tree::new(5);
        let meta = Meta::root(0o755, 5);
        for p in [
            "usr/bin/redis",
            "usr/bin/perl",
            "usr/lib/x/libc.so",
            "usr/share/doc/a",
            "etc/redis/redis.conf",
            "etc/passwd",
        ] {
            let leaf = Inode::Leaf(Arc::new(Leaf {
                meta: Meta::root(0o644, 9),
                kind: LeafKind::File(Content::inline(vec![])),
            }));
            t.insert(&TreePath::parse(p).unwrap(), leaf, &meta).unwrap();
        }
        let keep: Vec<TreePath> = ["/usr/bin/redis", "/usr/lib", "/etc/redis"]
            .iter()
            .map(|k| TreePath::parse(k).unwrap())
            .collect();
        let mut path = TreePath::root();
        retain(&mut t.root, &mut path, &keep);
        stamp(&mut t.root, 1);
        let names: Vec<String> = dump(&t, true)
            .lines()
            .map(|l| l.split(' ').next().unwrap().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "/",
                "/etc",
                "/etc/redis",
                "/etc/redis/redis.conf",
                "/usr",
                "/usr/bin",
                "/usr/bin/redis",
                "/usr/lib",
                "/usr/lib/x",
                "/usr/lib/x/libc.so"
            ]
        );
        assert!(
            dump(&t, true).lines().all(|l| l.contains(" t=1 ")),
            "every entry stamped"
        );
    }
}
