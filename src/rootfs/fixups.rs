//! The changes every image tree gets before it goes into the root filesystem, as LinuxKit
//! makes them (so images built for LinuxKit behave the same): files a container engine would
//! have injected are dropped, `/etc/hosts` and `/etc/resolv.conf` are fixed, and the mount
//! points a runtime needs exist.

use std::ffi::OsStr;
use std::sync::Arc;

use crate::tree::{Content, Directory, Inode, Leaf, LeafKind, Meta};

/// Paths a container engine adds to exported images; never part of an osbuild image.
const EXCLUDED: [&str; 6] = [
    ".dockerenv",
    "Dockerfile",
    "dev/console",
    "dev/pts",
    "dev/shm",
    "etc/hostname",
];

/// The fixed `/etc/hosts` every image gets.
pub const HOSTS: &str = "127.0.0.1       localhost
::1     localhost ip6-localhost ip6-loopback
fe00::0 ip6-localnet
ff00::0 ip6-mcastprefix
ff02::1 ip6-allnodes
ff02::2 ip6-allrouters
";

/// The placeholder `/etc/resolv.conf` of container images.
pub const RESOLV_PLACEHOLDER: &str = "\n# no resolv.conf configured\n";

/// Where init images point `/etc/resolv.conf`: a writable place the DHCP client fills.
pub const RESOLV_SYMLINK: &str = "/run/resolvconf/resolv.conf";

/// How `/etc/resolv.conf` is fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolv {
    /// A placeholder file (container images).
    Placeholder,
    /// A symlink to [`RESOLV_SYMLINK`] (init images and volumes).
    Symlink,
}

/// Apply the fixups to the root directory of one image; `mtime` is the build's fixed time.
pub fn fix_image(root: &mut Directory, resolv: Resolv, mtime: i64) {
    for path in EXCLUDED {
        remove(root, path);
    }
    let dir_meta = Meta::root(0o755, mtime);
    for dir in ["dev", "dev/pts", "dev/shm", "etc", "proc", "sys"] {
        ensure_dir(root, dir, &dir_meta, mtime);
    }
    let Some(Inode::Directory(etc)) = root.entries.get_mut(OsStr::new("etc")) else {
        // ensure_dir only leaves a non-directory `etc` when the image has one; then there is
        // nowhere to put the files, as with LinuxKit, which would fail to write below it.
        return;
    };
    replace_file(etc, "hosts", HOSTS, mtime);
    match resolv {
        Resolv::Placeholder => replace_file(etc, "resolv.conf", RESOLV_PLACEHOLDER, mtime),
        Resolv::Symlink => {
            let meta = existing_meta(etc, "resolv.conf").unwrap_or(Meta::root(0o644, mtime));
            etc.entries.insert(
                "resolv.conf".into(),
                leaf(
                    Meta { mtime, ..meta },
                    LeafKind::Symlink(RESOLV_SYMLINK.into()),
                ),
            );
        }
    }
    match etc.entries.get_mut(OsStr::new("mtab")) {
        Some(Inode::Leaf(l)) => Arc::make_mut(l).meta.mtime = mtime,
        Some(Inode::Directory(d)) => d.meta.mtime = mtime,
        None => {
            etc.entries.insert(
                "mtab".into(),
                leaf(
                    Meta::root(0o755, mtime),
                    LeafKind::Symlink("/proc/mounts".into()),
                ),
            );
        }
    }
}

fn leaf(meta: Meta, kind: LeafKind) -> Inode {
    Inode::Leaf(Arc::new(Leaf { meta, kind }))
}

fn existing_meta(dir: &Directory, name: &str) -> Option<Meta> {
    match dir.entries.get(OsStr::new(name))? {
        Inode::Leaf(l) => Some(l.meta.clone()),
        Inode::Directory(d) => Some(d.meta.clone()),
    }
}

/// Replace (or create, 0644) `name` with `text`, keeping an existing entry's ownership and mode.
fn replace_file(dir: &mut Directory, name: &str, text: &str, mtime: i64) {
    let meta = existing_meta(dir, name).unwrap_or(Meta::root(0o644, mtime));
    dir.entries.insert(
        name.into(),
        leaf(
            Meta { mtime, ..meta },
            LeafKind::File(Content::inline(text.as_bytes().to_vec())),
        ),
    );
}

fn remove(root: &mut Directory, path: &str) {
    let mut dir = root;
    let mut parts = path.split('/').peekable();
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            dir.entries.remove(OsStr::new(part));
            return;
        }
        match dir.entries.get_mut(OsStr::new(part)) {
            Some(Inode::Directory(d)) => dir = d,
            _ => return,
        }
    }
}

/// Make sure the directory at `path` exists; an existing one keeps its metadata but takes the
/// build's mtime. A non-directory in the way is left alone.
fn ensure_dir(root: &mut Directory, path: &str, meta: &Meta, mtime: i64) {
    let mut dir = root;
    for part in path.split('/') {
        let entry = dir
            .entries
            .entry(part.into())
            .or_insert_with(|| Inode::Directory(Box::new(Directory::new(meta.clone()))));
        match entry {
            Inode::Directory(d) => dir = d,
            Inode::Leaf(_) => return,
        }
    }
    dir.meta.mtime = mtime;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::{Tree, TreePath};

    fn file(text: &str, mode: u32) -> Inode {
        leaf(
            Meta::root(mode, 5),
            LeafKind::File(Content::inline(text.as_bytes().to_vec())),
        )
    }

    fn kind_at(tree: &Tree, path: &str) -> Option<String> {
        Some(match tree.get(&TreePath::parse(path).unwrap())? {
            Inode::Directory(d) => format!("dir {:o} {}", d.meta.mode, d.meta.mtime),
            Inode::Leaf(l) => match &l.kind {
                LeafKind::File(c) => format!(
                    "file {:o} {} {:?}",
                    l.meta.mode,
                    l.meta.mtime,
                    String::from_utf8(c.read_to_vec().unwrap()).unwrap()
                ),
                LeafKind::Symlink(t) => format!("link {}", t.to_string_lossy()),
                other => format!("{other:?}"),
            },
        })
    }

    #[test]
    fn container_image_gets_linuxkit_fixups() {
        let meta = Meta::root(0o755, 5);
        let mut t = Tree::new(5);
        for (p, f) in [
            (".dockerenv", file("", 0o644)),
            ("Dockerfile", file("FROM x", 0o644)),
            ("etc/hostname", file("docker", 0o644)),
            ("etc/hosts", file("1.2.3.4 x", 0o600)),
            ("dev/console", file("", 0o600)),
            ("bin/sh", file("elf", 0o755)),
        ] {
            t.insert(&TreePath::parse(p).unwrap(), f, &meta).unwrap();
        }
        fix_image(&mut t.root, Resolv::Placeholder, 99);
        assert_eq!(kind_at(&t, ".dockerenv"), None);
        assert_eq!(kind_at(&t, "Dockerfile"), None);
        assert_eq!(kind_at(&t, "etc/hostname"), None);
        assert_eq!(kind_at(&t, "dev/console"), None);
        assert_eq!(
            kind_at(&t, "etc/hosts").unwrap(),
            format!("file 600 99 {HOSTS:?}")
        );
        assert_eq!(
            kind_at(&t, "etc/resolv.conf").unwrap(),
            format!("file 644 99 {RESOLV_PLACEHOLDER:?}")
        );
        assert_eq!(kind_at(&t, "etc/mtab").unwrap(), "link /proc/mounts");
        for d in ["dev/pts", "dev/shm", "proc", "sys"] {
            assert_eq!(kind_at(&t, d).unwrap(), "dir 755 99", "{d}");
        }
        assert_eq!(kind_at(&t, "etc").unwrap(), "dir 755 99");
        assert_eq!(kind_at(&t, "bin/sh").unwrap(), "file 755 5 \"elf\"");
    }

    #[test]
    fn init_image_resolv_is_a_symlink() {
        let mut t = Tree::new(0);
        fix_image(&mut t.root, Resolv::Symlink, 1);
        assert_eq!(
            kind_at(&t, "etc/resolv.conf").unwrap(),
            format!("link {RESOLV_SYMLINK}")
        );
    }

    #[test]
    fn existing_mtab_is_kept() {
        let meta = Meta::root(0o755, 5);
        let mut t = Tree::new(5);
        t.insert(
            &TreePath::parse("etc/mtab").unwrap(),
            file("x", 0o644),
            &meta,
        )
        .unwrap();
        fix_image(&mut t.root, Resolv::Placeholder, 7);
        assert_eq!(kind_at(&t, "etc/mtab").unwrap(), "file 644 7 \"x\"");
    }
}
