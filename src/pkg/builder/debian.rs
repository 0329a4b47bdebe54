//! The `debian` builder: a root filesystem from Debian packages of the target architecture,
//! unpacked by `mmdebstrap --variant=extract` (no maintainer scripts, so foreign architectures
//! need no emulation), then cut down to the paths the program needs. The `cargo` builder
//! starts from the same layer when it declares `debian:`.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;

use crate::flatten::apply_layer;
use crate::image::Arch;
use crate::pkg::manifest::{DebianBuilder, DebianSelection};
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

/// Unpack `spec.include` for `arch`, keep what `spec.keep` selects and lay `spec.files` and
/// `spec.links` over it.
pub fn build(
    package: &Package,
    spec: &DebianBuilder,
    arch: Arch,
    mtime: i64,
) -> Result<Built, PkgError> {
    let mut built = layer(package, "debian", spec.selection(), arch, mtime)?;
    super::files::add_files(
        &mut built.tree,
        package,
        &spec.files,
        "builder.debian.files",
        mtime,
    )?;
    super::files::add_links(
        &mut built.tree,
        package,
        &spec.links,
        "builder.debian.links",
        mtime,
    )?;
    Ok(built)
}

/// The packages `selection` includes, unpacked for `arch`, cut to its `keep` paths and stamped
/// with `mtime`. `builder` names the caller in errors.
pub fn layer(
    package: &Package,
    builder: &str,
    selection: DebianSelection<'_>,
    arch: Arch,
    mtime: i64,
) -> Result<Built, PkgError> {
    let scratch = tempfile::Builder::new()
        .prefix("osbuild-debian-")
        .tempdir()
        .map_err(|e| PkgError::io(&std::env::temp_dir(), e))?;
    let out = scratch.path().join("rootfs.tar");
    let suite = selection.suite.unwrap_or(DEFAULT_SUITE);
    unpack(
        package,
        builder,
        &selection.include.value,
        arch,
        suite,
        &out,
        mtime,
    )?;
    let mut tree = Tree::new(mtime);
    apply_layer(&mut tree, &out).map_err(|e| PkgError::Usage(e.to_string()))?;
    if !selection.keep.is_empty() {
        let keep: Vec<Pattern> = selection
            .keep
            .iter()
            .map(|k| Pattern::parse(&k.value))
            .collect::<Result<_, _>>()?;
        retain(&mut tree.root, &mut Vec::new(), &keep);
    }
    stamp(&mut tree.root, mtime);
    Ok(Built { tree, scratch })
}

/// A `keep` path whose components may hold `*` (any run of characters) and `?` (any one).
#[derive(Debug)]
struct Pattern(Vec<OsString>);

impl Pattern {
    fn parse(text: &str) -> Result<Pattern, PkgError> {
        let path =
            TreePath::parse(text).map_err(|e| PkgError::Usage(format!("keep {text:?}: {e}")))?;
        Ok(Pattern(path.components().map(OsStr::to_owned).collect()))
    }

    /// Whether `path`'s components and the pattern's match as far as both go.
    fn agrees(&self, path: &[OsString]) -> bool {
        self.0
            .iter()
            .zip(path)
            .all(|(p, name)| glob(p.as_bytes(), name.as_bytes()))
    }

    /// Whether `path` is what the pattern names or lies under it.
    fn covers(&self, path: &[OsString]) -> bool {
        path.len() >= self.0.len() && self.agrees(path)
    }
}

/// Whether `name` matches `pattern` (`*`: any run of bytes, `?`: any one byte).
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    // The classic backtracking match: only the last `*` needs revisiting.
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Keep entries that are, lead to, or lie under a path one of `keep` matches.
fn retain(dir: &mut Directory, path: &mut Vec<OsString>, keep: &[Pattern]) {
    dir.entries.retain(|name, inode| {
        path.push(name.clone());
        let covered = keep.iter().any(|k| k.covers(path));
        let kept = match inode {
            Inode::Directory(sub) if !covered => {
                let leads = keep.iter().any(|k| k.agrees(path));
                if leads {
                    retain(sub, path, keep);
                }
                leads
            }
            _ => covered,
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
        let keep: Vec<Pattern> = ["/usr/bin/redis", "/usr/lib", "/etc/redis"]
            .iter()
            .map(|k| Pattern::parse(k).unwrap())
            .collect();
        retain(&mut t.root, &mut Vec::new(), &keep);
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

    #[test]
    fn globs_match_within_one_component() {
        assert!(glob(b"libext2fs.so.2*", b"libext2fs.so.2"));
        assert!(glob(b"libext2fs.so.2*", b"libext2fs.so.2.4"));
        assert!(!glob(b"libext2fs.so.2*", b"libext2fs.so.1"));
        assert!(glob(b"*-linux-gnu", b"x86_64-linux-gnu"));
        assert!(glob(b"ld*", b"ld64.so.1"));
        assert!(glob(b"a*b*c", b"aXbYbZc"));
        assert!(!glob(b"a*b*c", b"aXbYbZ"));
        assert!(glob(b"lib?.so", b"libc.so"));
        assert!(!glob(b"lib?.so", b"lib.so"));
        assert!(glob(b"*", b""));
        assert!(!glob(b"x", b""));
    }

    #[test]
    fn keep_patterns_select_the_same_files_on_every_architecture() {
        let meta = Meta::root(0o755, 5);
        let keep: Vec<Pattern> = [
            "/sbin/mke2fs",
            "/lib/*-linux-gnu/libc.so.6",
            "/lib/*-linux-gnu/libext2fs.so.2*",
        ]
        .iter()
        .map(|k| Pattern::parse(k).unwrap())
        .collect();
        for triple in ["x86_64-linux-gnu", "aarch64-linux-gnu", "s390x-linux-gnu"] {
            let mut t = Tree::new(5);
            for p in [
                "sbin/mke2fs".to_string(),
                "sbin/e2fsck".into(),
                format!("lib/{triple}/libc.so.6"),
                format!("lib/{triple}/libm.so.6"),
                format!("lib/{triple}/libext2fs.so.2"),
                format!("lib/{triple}/libext2fs.so.2.4"),
                "lib/systemd/x".into(),
            ] {
                let leaf = Inode::Leaf(Arc::new(Leaf {
                    meta: Meta::root(0o644, 9),
                    kind: LeafKind::File(Content::inline(vec![])),
                }));
                t.insert(&TreePath::parse(&p).unwrap(), leaf, &meta)
                    .unwrap();
            }
            retain(&mut t.root, &mut Vec::new(), &keep);
            let names: Vec<String> = dump(&t, true)
                .lines()
                .map(|l| l.split(' ').next().unwrap().to_string())
                .collect();
            let lib = format!("/lib/{triple}");
            assert_eq!(
                names,
                [
                    "/".to_string(),
                    "/lib".into(),
                    lib.clone(),
                    format!("{lib}/libc.so.6"),
                    format!("{lib}/libext2fs.so.2"),
                    format!("{lib}/libext2fs.so.2.4"),
                    "/sbin".into(),
                    "/sbin/mke2fs".into(),
                ]
            );
        }
    }
}
