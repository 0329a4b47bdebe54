//! Write a tree as a newc ("070701") cpio archive, the format the Linux kernel unpacks as an
//! initramfs. Hardlinks stay hardlinks: every name of a group carries the same inode number and
//! link count, and the body is written once, with the group's last name (GNU cpio's convention,
//! which the kernel's unpacker follows by linking earlier names and filling the file last).
//!
//! The root directory is not written (the kernel unpacks into an existing root). Inode numbers
//! are given in walk order, so the archive depends on nothing but the tree.

use std::collections::HashMap;
use std::io::{self, Write};
use std::sync::Arc;

use super::{ArchiveError, copy_content};
use crate::tree::{Directory, Inode, Leaf, LeafKind, Meta, Tree, WalkEntry};

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;
const S_IFBLK: u32 = 0o060000;
const S_IFIFO: u32 = 0o010000;

/// How a cpio archive is written.
pub type CpioOptions<'a> = super::ArchiveOptions<'a>;

/// What was written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpioStats {
    /// Entries written (the trailer not counted).
    pub entries: u64,
    /// Bytes of file bodies written.
    pub body_bytes: u64,
    /// Bytes of the whole archive.
    pub archive_bytes: u64,
}

/// Counts bytes on their way to the inner writer.
struct Counting<'a, W: Write> {
    inner: &'a mut W,
    written: u64,
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// One hardlink group: its inode number, how many names it has, how many were written.
struct Group {
    ino: u32,
    names: u32,
    written: u32,
}

/// The name of the entry that ends a newc archive.
const TRAILER: &[u8] = b"TRAILER!!!";

/// Write `tree` (but its root) to `out` as a newc cpio archive ending in `TRAILER!!!`. An
/// entry of that name at the root is refused: readers would stop there.
pub fn write_cpio<W: Write>(
    tree: &Tree,
    out: &mut W,
    opts: &CpioOptions<'_>,
) -> Result<CpioStats, ArchiveError> {
    let mut groups = count_names(tree, opts);
    let mut out = Counting {
        inner: out,
        written: 0,
    };
    let mut stats = CpioStats::default();
    let mut next_ino: u32 = 1;
    let mut buf = vec![0u8; 1 << 20];
    tree.walk(|entry| {
        let path = match &entry {
            WalkEntry::Directory { path, .. } | WalkEntry::Leaf { path, .. } => *path,
        };
        if !opts.keeps(path) {
            return Ok(());
        }
        let name = path.to_bytes();
        let display = path.to_string();
        if name == TRAILER {
            return Err(ArchiveError::Unrepresentable {
                path: display,
                reason: "a newc archive ends at an entry of this name (cpio and the kernel \
                         stop reading there): rename it, or build a disk format"
                    .into(),
            });
        }
        match entry {
            WalkEntry::Directory { dir, .. } => {
                let ino = take_ino(&mut next_ino, &display)?;
                let fields = Fields {
                    ino,
                    mode: S_IFDIR | (dir.meta.mode & 0o7777),
                    nlink: 2 + subdirs(dir),
                    size: 0,
                    rdev: (0, 0),
                };
                write_header(&mut out, &name, &dir.meta, &fields, opts, &display)?;
            }
            WalkEntry::Leaf { leaf, .. } => {
                let group = groups.get_mut(&Arc::as_ptr(leaf));
                let (ino, nlink, last) = match group {
                    Some(g) => {
                        if g.written == 0 {
                            g.ino = take_ino(&mut next_ino, &display)?;
                        }
                        g.written += 1;
                        (g.ino, g.names, g.written == g.names)
                    }
                    None => (take_ino(&mut next_ino, &display)?, 1, true),
                };
                write_leaf(
                    &mut out, &name, leaf, ino, nlink, last, opts, &display, &mut buf, &mut stats,
                )?;
            }
        }
        stats.entries += 1;
        Ok::<(), ArchiveError>(())
    })?;
    let trailer = Fields {
        ino: 0,
        mode: 0,
        nlink: 1,
        size: 0,
        rdev: (0, 0),
    };
    // The trailer is no file: its mtime is 0 whatever the clamp (a negative
    // `SOURCE_DATE_EPOCH` would otherwise make it unwritable).
    write_header(
        &mut out,
        TRAILER,
        &Meta::root(0, 0),
        &trailer,
        &CpioOptions::default(),
        "TRAILER!!!",
    )?;
    // Pad the archive to a whole 512-byte block, as cpio(1) does.
    let rem = (out.written % 512) as usize;
    if rem != 0 {
        out.write_all(&vec![0u8; 512 - rem])
            .map_err(|source| ArchiveError::Write {
                path: "TRAILER!!!".into(),
                source,
            })?;
    }
    stats.archive_bytes = out.written;
    Ok(stats)
}

fn take_ino(next: &mut u32, path: &str) -> Result<u32, ArchiveError> {
    let ino = *next;
    *next = next
        .checked_add(1)
        .ok_or_else(|| ArchiveError::Unrepresentable {
            path: path.into(),
            reason: "more than 2^32 entries do not fit a newc cpio archive".into(),
        })?;
    Ok(ino)
}

fn subdirs(dir: &Directory) -> u32 {
    dir.entries
        .values()
        .filter(|i| matches!(i, Inode::Directory(_)))
        .count() as u32
}

/// Leaves with more than one name in the (filtered) archive, by identity.
fn count_names(tree: &Tree, opts: &CpioOptions<'_>) -> HashMap<*const Leaf, Group> {
    let mut counts: HashMap<*const Leaf, u32> = HashMap::new();
    let _ = tree.walk::<()>(|entry| {
        if let WalkEntry::Leaf { path, leaf } = entry
            && Arc::strong_count(leaf) > 1
            && opts.keeps(path)
        {
            *counts.entry(Arc::as_ptr(leaf)).or_default() += 1;
        }
        Ok(())
    });
    counts
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(k, names)| {
            (
                k,
                Group {
                    ino: 0,
                    names,
                    written: 0,
                },
            )
        })
        .collect()
}

struct Fields {
    ino: u32,
    mode: u32,
    nlink: u32,
    size: u64,
    rdev: (u32, u32),
}

#[allow(clippy::too_many_arguments)]
fn write_leaf<W: Write>(
    out: &mut Counting<'_, W>,
    name: &[u8],
    leaf: &Leaf,
    ino: u32,
    nlink: u32,
    with_body: bool,
    opts: &CpioOptions<'_>,
    display: &str,
    buf: &mut [u8],
    stats: &mut CpioStats,
) -> Result<(), ArchiveError> {
    let perm = leaf.meta.mode & 0o7777;
    let err = |source| ArchiveError::Write {
        path: display.into(),
        source,
    };
    match &leaf.kind {
        LeafKind::File(content) => {
            let size = if with_body { content.len() } else { 0 };
            let fields = Fields {
                ino,
                mode: S_IFREG | perm,
                nlink,
                size,
                rdev: (0, 0),
            };
            write_header(out, name, &leaf.meta, &fields, opts, display)?;
            if with_body {
                copy_content(content, out, buf, display)?;
                pad4(out, size).map_err(err)?;
                stats.body_bytes += size;
            }
        }
        LeafKind::Symlink(target) => {
            use std::os::unix::ffi::OsStrExt;
            let target = target.as_bytes();
            if let Some(reason) = super::bad_symlink_target(target) {
                return Err(ArchiveError::Unrepresentable {
                    path: display.into(),
                    reason,
                });
            }
            let fields = Fields {
                ino,
                mode: S_IFLNK | perm,
                nlink,
                size: target.len() as u64,
                rdev: (0, 0),
            };
            write_header(out, name, &leaf.meta, &fields, opts, display)?;
            out.write_all(target).map_err(err)?;
            pad4(out, target.len() as u64).map_err(err)?;
        }
        LeafKind::CharDevice { major, minor } | LeafKind::BlockDevice { major, minor } => {
            let kind = if matches!(leaf.kind, LeafKind::CharDevice { .. }) {
                S_IFCHR
            } else {
                S_IFBLK
            };
            let fields = Fields {
                ino,
                mode: kind | perm,
                nlink,
                size: 0,
                rdev: (*major, *minor),
            };
            write_header(out, name, &leaf.meta, &fields, opts, display)?;
        }
        LeafKind::Fifo => {
            let fields = Fields {
                ino,
                mode: S_IFIFO | perm,
                nlink,
                size: 0,
                rdev: (0, 0),
            };
            write_header(out, name, &leaf.meta, &fields, opts, display)?;
        }
    }
    Ok(())
}

fn pad4<W: Write>(out: &mut W, len: u64) -> io::Result<()> {
    let rem = (len % 4) as usize;
    if rem != 0 {
        out.write_all(&[0u8; 4][..4 - rem])?;
    }
    Ok(())
}

fn write_header<W: Write>(
    out: &mut Counting<'_, W>,
    name: &[u8],
    meta: &Meta,
    f: &Fields,
    opts: &CpioOptions<'_>,
    display: &str,
) -> Result<(), ArchiveError> {
    let unrepresentable = |reason: String| ArchiveError::Unrepresentable {
        path: display.into(),
        reason,
    };
    let size = u32::try_from(f.size).map_err(|_| {
        unrepresentable(format!(
            "{} bytes is over the 4 GiB a newc cpio entry can hold",
            f.size
        ))
    })?;
    let mtime = opts.mtime(meta.mtime);
    let mtime = u32::try_from(mtime).map_err(|_| {
        unrepresentable(format!(
            "mtime {mtime} is outside the range newc cpio can hold"
        ))
    })?;
    let namesize = u32::try_from(name.len() + 1)
        .ok()
        .filter(|n| *n <= 4096)
        .ok_or_else(|| {
            unrepresentable("a name over 4095 bytes does not fit an initramfs".into())
        })?;
    let header = format!(
        "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
        f.ino,
        f.mode,
        meta.uid,
        meta.gid,
        f.nlink,
        mtime,
        size,
        0,
        0,
        f.rdev.0,
        f.rdev.1,
        namesize,
        0
    );
    let err = |source| ArchiveError::Write {
        path: display.into(),
        source,
    };
    out.write_all(header.as_bytes()).map_err(err)?;
    out.write_all(name).map_err(err)?;
    out.write_all(&[0]).map_err(err)?;
    pad4(out, 110 + u64::from(namesize)).map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Content;
    use crate::tree::TreePath;

    fn parse(archive: &[u8]) -> Vec<(String, u32, u32, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let mut pos = 0;
        loop {
            let h = std::str::from_utf8(&archive[pos..pos + 110]).unwrap();
            assert_eq!(&h[..6], "070701");
            let field = |i: usize| u32::from_str_radix(&h[6 + i * 8..14 + i * 8], 16).unwrap();
            let (ino, mode, nlink, size, namesize) =
                (field(0), field(1), field(4), field(6), field(11));
            let name_start = pos + 110;
            let name =
                String::from_utf8(archive[name_start..name_start + namesize as usize - 1].to_vec())
                    .unwrap();
            let mut data = name_start + namesize as usize;
            data += (4 - data % 4) % 4;
            let body = archive[data..data + size as usize].to_vec();
            pos = data + size as usize;
            pos += (4 - pos % 4) % 4;
            if name == "TRAILER!!!" {
                assert_eq!(archive.len() % 512, 0);
                return out;
            }
            out.push((name, ino, mode, nlink, body));
        }
    }

    #[test]
    fn hardlinks_share_inode_and_body_comes_last() {
        let mut t = Tree::new(0);
        let meta = Meta::root(0o755, 0);
        let shared = Inode::Leaf(Arc::new(Leaf {
            meta: Meta::root(0o644, 0),
            kind: LeafKind::File(Content::inline(b"body".to_vec())),
        }));
        t.insert(&TreePath::parse("a/one").unwrap(), shared.clone(), &meta)
            .unwrap();
        t.insert(&TreePath::parse("b/two").unwrap(), shared, &meta)
            .unwrap();
        t.insert(
            &TreePath::parse("l").unwrap(),
            Inode::Leaf(Arc::new(Leaf {
                meta: Meta::root(0o777, 0),
                kind: LeafKind::Symlink("a/one".into()),
            })),
            &meta,
        )
        .unwrap();
        let mut out = Vec::new();
        let stats = write_cpio(&t, &mut out, &CpioOptions::default()).unwrap();
        let entries = parse(&out);
        let names: Vec<_> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(names, ["a", "a/one", "b", "b/two", "l"]);
        let one = &entries[1];
        let two = &entries[3];
        assert_eq!(one.1, two.1, "same inode");
        assert_eq!((one.3, two.3), (2, 2), "link count");
        assert_eq!(
            (one.4.as_slice(), two.4.as_slice()),
            (&b""[..], &b"body"[..])
        );
        assert_eq!(entries[0].2, S_IFDIR | 0o755);
        assert_eq!(entries[4].2, S_IFLNK | 0o777);
        assert_eq!(entries[4].4, b"a/one");
        assert_eq!(stats.entries, 5);
        assert_eq!(stats.archive_bytes, out.len() as u64);
    }

    #[test]
    fn filtered_out_names_do_not_count_as_links() {
        let mut t = Tree::new(0);
        let meta = Meta::root(0o755, 0);
        let shared = Inode::Leaf(Arc::new(Leaf {
            meta: Meta::root(0o644, 0),
            kind: LeafKind::File(Content::inline(b"x".to_vec())),
        }));
        t.insert(&TreePath::parse("boot/k").unwrap(), shared.clone(), &meta)
            .unwrap();
        t.insert(&TreePath::parse("k").unwrap(), shared, &meta)
            .unwrap();
        let keep = |p: &TreePath| !p.starts_with(&TreePath::parse("boot").unwrap());
        let mut out = Vec::new();
        write_cpio(
            &t,
            &mut out,
            &CpioOptions {
                mtime_clamp: None,
                filter: Some(&keep),
            },
        )
        .unwrap();
        let entries = parse(&out);
        assert_eq!(entries.len(), 1);
        assert_eq!((entries[0].3, entries[0].4.as_slice()), (1, &b"x"[..]));
    }

    #[test]
    fn negative_mtime_is_refused_with_the_path() {
        let mut t = Tree::new(0);
        let meta = Meta::root(0o755, 0);
        t.insert(
            &TreePath::parse("old").unwrap(),
            Inode::Leaf(Arc::new(Leaf {
                meta: Meta::root(0o644, -5),
                kind: LeafKind::Fifo,
            })),
            &meta,
        )
        .unwrap();
        let err = write_cpio(&t, &mut Vec::new(), &CpioOptions::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "old: mtime -5 is outside the range newc cpio can hold"
        );
    }

    #[test]
    fn a_negative_clamp_refuses_entries_by_name_and_leaves_the_trailer_alone() {
        // No entry: only the trailer, whose mtime is 0 whatever the clamp.
        let opts = CpioOptions {
            mtime_clamp: Some(-1),
            filter: None,
        };
        let mut out = Vec::new();
        write_cpio(&Tree::new(0), &mut out, &opts).unwrap();
        assert_eq!(parse(&out), []);
        assert_eq!(&out[6 + 5 * 8..6 + 6 * 8], b"00000000", "trailer mtime");
        let mut t = Tree::new(0);
        t.insert(
            &TreePath::parse("f").unwrap(),
            Inode::Leaf(Arc::new(Leaf {
                meta: Meta::root(0o644, 5),
                kind: LeafKind::Fifo,
            })),
            &Meta::root(0o755, 0),
        )
        .unwrap();
        let err = write_cpio(&t, &mut Vec::new(), &opts).unwrap_err();
        assert_eq!(
            err.to_string(),
            "f: mtime -1 is outside the range newc cpio can hold"
        );
    }

    #[test]
    fn symlink_targets_with_a_nul_or_nothing_are_refused() {
        use std::os::unix::ffi::OsStringExt;
        for (target, message) in [
            (
                &b"a\0b"[..],
                "l: symlink target \"a\\0b\" contains a NUL byte, which ends it early for every reader",
            ),
            (b"", "l: a symlink needs a target; this one is empty"),
        ] {
            let mut t = Tree::new(0);
            t.insert(
                &TreePath::parse("l").unwrap(),
                Inode::Leaf(Arc::new(Leaf {
                    meta: Meta::root(0o777, 0),
                    kind: LeafKind::Symlink(std::ffi::OsString::from_vec(target.to_vec())),
                })),
                &Meta::root(0o755, 0),
            )
            .unwrap();
            let err = write_cpio(&t, &mut Vec::new(), &CpioOptions::default()).unwrap_err();
            assert_eq!(err.to_string(), message);
        }
    }

    #[test]
    fn an_entry_named_like_the_trailer_is_refused() {
        let mut t = Tree::new(0);
        let meta = Meta::root(0o755, 0);
        let file = |body: &[u8]| {
            Inode::Leaf(Arc::new(Leaf {
                meta: Meta::root(0o644, 0),
                kind: LeafKind::File(Content::inline(body.to_vec())),
            }))
        };
        // Deeper down the name is harmless: readers compare the whole path.
        t.insert(
            &TreePath::parse("etc/TRAILER!!!").unwrap(),
            file(b"ok"),
            &meta,
        )
        .unwrap();
        let mut out = Vec::new();
        write_cpio(&t, &mut out, &CpioOptions::default()).unwrap();
        t.insert(&TreePath::parse("TRAILER!!!").unwrap(), file(b"x"), &meta)
            .unwrap();
        let err = write_cpio(&t, &mut Vec::new(), &CpioOptions::default()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("TRAILER!!!: a newc archive ends at an entry of this name"),
            "{err}"
        );
    }
}
