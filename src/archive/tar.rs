//! Write a tree as a POSIX tar archive (ustar headers, PAX extended headers where ustar cannot
//! hold a value). Deterministic: walk order, no user or group names, nothing from the host.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::sync::Arc;

use super::{ArchiveError, copy_content};
use crate::tree::{Leaf, LeafKind, Meta, Tree, WalkEntry};

const BLOCK: usize = 512;

/// How a tar archive is written.
pub type TarOptions<'a> = super::ArchiveOptions<'a>;

/// What was written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TarStats {
    /// Entries written.
    pub entries: u64,
    /// Bytes of file bodies written.
    pub body_bytes: u64,
}

/// One header's worth of fields.
struct Header<'a> {
    path: Vec<u8>,
    meta: &'a Meta,
    typeflag: u8,
    size: u64,
    link: &'a [u8],
    dev: (u32, u32),
}

/// Write every entry of `tree` (but the root) to `out` as a tar archive.
pub fn write_tar<W: Write>(
    tree: &Tree,
    out: &mut W,
    opts: &TarOptions<'_>,
) -> Result<TarStats, ArchiveError> {
    let mut stats = TarStats::default();
    let mut first_names: HashMap<*const Leaf, Vec<u8>> = HashMap::new();
    let mut buf = vec![0u8; 1 << 20];
    tree.walk(|entry| {
        let path = match &entry {
            WalkEntry::Directory { path, .. } | WalkEntry::Leaf { path, .. } => *path,
        };
        if !opts.keeps(path) {
            return Ok(());
        }
        let name = path.to_bytes();
        let err = |source: io::Error| ArchiveError::Write {
            path: path.to_string(),
            source,
        };
        match entry {
            WalkEntry::Directory { dir, .. } => {
                let mut dir_name = name;
                dir_name.push(b'/');
                write_header(
                    out,
                    &Header {
                        path: dir_name,
                        meta: &dir.meta,
                        typeflag: b'5',
                        size: 0,
                        link: b"",
                        dev: (0, 0),
                    },
                    opts,
                )
                .map_err(err)?;
            }
            WalkEntry::Leaf { leaf, .. } => {
                let key = Arc::as_ptr(leaf);
                if let Some(first) = first_names.get(&key) {
                    write_header(
                        out,
                        &Header {
                            path: name,
                            meta: &leaf.meta,
                            typeflag: b'1',
                            size: 0,
                            link: first,
                            dev: (0, 0),
                        },
                        opts,
                    )
                    .map_err(err)?;
                } else {
                    if Arc::strong_count(leaf) > 1 {
                        first_names.insert(key, name.clone());
                    }
                    write_leaf(out, name, leaf, opts, &mut buf, &mut stats).map_err(
                        |e| match e {
                            ArchiveError::Write { source, .. } => err(source),
                            other => other,
                        },
                    )?;
                }
            }
        }
        stats.entries += 1;
        Ok::<(), ArchiveError>(())
    })?;
    out.write_all(&[0u8; 2 * BLOCK])
        .map_err(|source| ArchiveError::Write {
            path: "end of archive".into(),
            source,
        })?;
    Ok(stats)
}

/// Write one regular file entry named `name` (mode `mode`, owner 0, modification time `mtime`)
/// whose `size` bytes are read from `body`, padded to a whole block. For archives assembled
/// from files rather than a tree (an OVA); end them with [`write_end`].
pub fn write_file<W: Write, R: Read>(
    out: &mut W,
    name: &str,
    mode: u32,
    mtime: i64,
    size: u64,
    body: R,
) -> Result<(), ArchiveError> {
    let err = |source| ArchiveError::Write {
        path: name.to_string(),
        source,
    };
    let meta = Meta::root(mode, mtime);
    let header = Header {
        path: name.as_bytes().to_vec(),
        meta: &meta,
        typeflag: b'0',
        size,
        link: b"",
        dev: (0, 0),
    };
    write_header(out, &header, &TarOptions::default()).map_err(err)?;
    let copied = io::copy(&mut body.take(size), out).map_err(err)?;
    if copied != size {
        return Err(ArchiveError::SizeChanged {
            path: name.to_string(),
            expected: size,
            read: copied,
        });
    }
    pad(out, size).map_err(err)
}

/// Write the end-of-archive marker (two zero blocks).
pub fn write_end<W: Write>(out: &mut W) -> Result<(), ArchiveError> {
    out.write_all(&[0u8; 2 * BLOCK])
        .map_err(|source| ArchiveError::Write {
            path: "end of archive".into(),
            source,
        })
}

fn write_leaf<W: Write>(
    out: &mut W,
    name: Vec<u8>,
    leaf: &Leaf,
    opts: &TarOptions<'_>,
    buf: &mut [u8],
    stats: &mut TarStats,
) -> Result<(), ArchiveError> {
    let display = String::from_utf8_lossy(&name).into_owned();
    let io_err = |source| ArchiveError::Write {
        path: display.clone(),
        source,
    };
    let meta = &leaf.meta;
    if let LeafKind::CharDevice { major, minor } | LeafKind::BlockDevice { major, minor } =
        &leaf.kind
        && !(fits_octal(u64::from(*major), 8) && fits_octal(u64::from(*minor), 8))
    {
        // No PAX record holds device numbers; base-256 fields are GNU's, not every
        // reader's.
        return Err(ArchiveError::Unrepresentable {
            path: display.clone(),
            reason: format!(
                "device {major}:{minor} does not fit tar's device fields (7 octal digits, up \
                 to {MAX_DEVICE} each)"
            ),
        });
    }
    match &leaf.kind {
        LeafKind::File(content) => {
            let size = content.len();
            write_header(
                out,
                &Header {
                    path: name,
                    meta,
                    typeflag: b'0',
                    size,
                    link: b"",
                    dev: (0, 0),
                },
                opts,
            )
            .map_err(io_err)?;
            copy_content(content, out, buf, &display)?;
            pad(out, size).map_err(io_err)?;
            stats.body_bytes += size;
        }
        LeafKind::Symlink(target) => {
            use std::os::unix::ffi::OsStrExt;
            if let Some(reason) = super::bad_symlink_target(target.as_bytes()) {
                return Err(ArchiveError::Unrepresentable {
                    path: display.clone(),
                    reason,
                });
            }
            write_header(
                out,
                &Header {
                    path: name,
                    meta,
                    typeflag: b'2',
                    size: 0,
                    link: target.as_bytes(),
                    dev: (0, 0),
                },
                opts,
            )
            .map_err(io_err)?;
        }
        LeafKind::CharDevice { major, minor } => {
            write_header(
                out,
                &Header {
                    path: name,
                    meta,
                    typeflag: b'3',
                    size: 0,
                    link: b"",
                    dev: (*major, *minor),
                },
                opts,
            )
            .map_err(io_err)?;
        }
        LeafKind::BlockDevice { major, minor } => {
            write_header(
                out,
                &Header {
                    path: name,
                    meta,
                    typeflag: b'4',
                    size: 0,
                    link: b"",
                    dev: (*major, *minor),
                },
                opts,
            )
            .map_err(io_err)?;
        }
        LeafKind::Fifo => {
            write_header(
                out,
                &Header {
                    path: name,
                    meta,
                    typeflag: b'6',
                    size: 0,
                    link: b"",
                    dev: (0, 0),
                },
                opts,
            )
            .map_err(io_err)?;
        }
    }
    Ok(())
}

fn pad<W: Write>(out: &mut W, size: u64) -> io::Result<()> {
    let rem = (size % BLOCK as u64) as usize;
    if rem != 0 {
        out.write_all(&[0u8; BLOCK][..BLOCK - rem])?;
    }
    Ok(())
}

/// The largest device number (major or minor) tar's 8-byte octal fields hold.
const MAX_DEVICE: u64 = 0o7777777;

/// Whether `value` fits an octal field of `width` bytes (width - 1 digits and a NUL).
fn fits_octal(value: u64, width: usize) -> bool {
    value < 1u64 << (3 * (width - 1))
}

fn put_octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(text.as_bytes());
    field[digits] = 0;
}

/// One PAX record: `LEN key=value\n`, where LEN counts the whole record.
fn pax_record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    let body = key.len() + value.len() + 3; // space, '=', newline
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    out.extend_from_slice(format!("{len} {key}=").as_bytes());
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn write_header<W: Write>(out: &mut W, h: &Header<'_>, opts: &TarOptions<'_>) -> io::Result<()> {
    let mtime = opts.mtime(h.meta.mtime);
    let mut pax = Vec::new();
    if h.path.len() > 100 {
        pax_record(&mut pax, "path", &h.path);
    }
    if h.link.len() > 100 {
        pax_record(&mut pax, "linkpath", h.link);
    }
    if !fits_octal(h.size, 12) {
        pax_record(&mut pax, "size", h.size.to_string().as_bytes());
    }
    if !fits_octal(u64::from(h.meta.uid), 8) {
        pax_record(&mut pax, "uid", h.meta.uid.to_string().as_bytes());
    }
    if !fits_octal(u64::from(h.meta.gid), 8) {
        pax_record(&mut pax, "gid", h.meta.gid.to_string().as_bytes());
    }
    let mtime_field = u64::try_from(mtime).ok().filter(|m| fits_octal(*m, 12));
    if mtime_field.is_none() {
        pax_record(&mut pax, "mtime", mtime.to_string().as_bytes());
    }
    for (name, value) in &h.meta.xattrs {
        pax_record(&mut pax, &format!("SCHILY.xattr.{name}"), value);
    }
    if !pax.is_empty() {
        let mut pax_name = b"PaxHeaders/".to_vec();
        pax_name.extend_from_slice(&h.path[h.path.len().saturating_sub(80)..]);
        let block = header_block(
            &pax_name,
            &Meta::root(0o644, 0),
            b'x',
            pax.len() as u64,
            b"",
            (0, 0),
            0,
        );
        out.write_all(&block)?;
        out.write_all(&pax)?;
        pad(out, pax.len() as u64)?;
    }
    let block = header_block(
        &h.path,
        h.meta,
        h.typeflag,
        h.size,
        h.link,
        h.dev,
        mtime_field.unwrap_or(0),
    );
    out.write_all(&block)
}

fn header_block(
    path: &[u8],
    meta: &Meta,
    typeflag: u8,
    size: u64,
    link: &[u8],
    dev: (u32, u32),
    mtime: u64,
) -> [u8; BLOCK] {
    let mut b = [0u8; BLOCK];
    let name_len = path.len().min(100);
    b[..name_len].copy_from_slice(&path[..name_len]);
    put_octal(&mut b[100..108], u64::from(meta.mode & 0o7777));
    put_octal(&mut b[108..116], u64::from(meta.uid).min(0o7777777));
    put_octal(&mut b[116..124], u64::from(meta.gid).min(0o7777777));
    put_octal(
        &mut b[124..136],
        if fits_octal(size, 12) { size } else { 0 },
    );
    put_octal(&mut b[136..148], mtime);
    b[156] = typeflag;
    let link_len = link.len().min(100);
    b[157..157 + link_len].copy_from_slice(&link[..link_len]);
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    if matches!(typeflag, b'3' | b'4') {
        // Larger numbers are refused before a header is made (`write_leaf`).
        put_octal(&mut b[329..337], u64::from(dev.0).min(MAX_DEVICE));
        put_octal(&mut b[337..345], u64::from(dev.1).min(MAX_DEVICE));
    }
    b[148..156].fill(b' ');
    let sum: u64 = b.iter().map(|&x| u64::from(x)).sum();
    let text = format!("{sum:06o}\0 ");
    b[148..156].copy_from_slice(text.as_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::TreePath;
    use crate::tree::{Content, Directory, Inode};
    use std::io::Read;

    fn sample() -> Tree {
        let mut t = Tree::new(5);
        let meta = Meta::root(0o755, 5);
        let shared = Inode::Leaf(Arc::new(Leaf {
            meta: Meta {
                uid: 3_000_000,
                ..Meta::root(0o640, 5)
            },
            kind: LeafKind::File(Content::inline(b"shared".to_vec())),
        }));
        let long = format!("deep/{}/file", "d".repeat(120));
        t.insert(&TreePath::parse(&long).unwrap(), shared.clone(), &meta)
            .unwrap();
        t.insert(&TreePath::parse("a/link").unwrap(), shared, &meta)
            .unwrap();
        let mut xl = Leaf {
            meta: Meta::root(0o4755, -1),
            kind: LeafKind::File(Content::inline(vec![])),
        };
        xl.meta.xattrs.insert("user.k".into(), b"v".to_vec());
        t.insert(
            &TreePath::parse("a/x").unwrap(),
            Inode::Leaf(Arc::new(xl)),
            &meta,
        )
        .unwrap();
        t.insert(
            &TreePath::parse("dev/null").unwrap(),
            Inode::Leaf(Arc::new(Leaf {
                meta: Meta::root(0o666, 5),
                kind: LeafKind::CharDevice { major: 1, minor: 3 },
            })),
            &meta,
        )
        .unwrap();
        t.insert(
            &TreePath::parse("s").unwrap(),
            Inode::Leaf(Arc::new(Leaf {
                meta: Meta::root(0o777, 5),
                kind: LeafKind::Symlink("a/x".into()),
            })),
            &meta,
        )
        .unwrap();
        t.insert(
            &TreePath::parse("e").unwrap(),
            Inode::Directory(Box::new(Directory::new(Meta::root(0o700, 5)))),
            &meta,
        )
        .unwrap();
        t
    }

    #[test]
    fn tar_crate_reads_back_every_field() {
        let mut out = Vec::new();
        let stats = write_tar(&sample(), &mut out, &TarOptions::default()).unwrap();
        assert_eq!(out.len() % BLOCK, 0);
        let mut ar = tar::Archive::new(&out[..]);
        let mut seen = Vec::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let h = e.header().clone();
            let kind = h.entry_type();
            let link = e
                .link_name()
                .unwrap()
                .map(|l| l.to_string_lossy().into_owned());
            let mut body = String::new();
            if kind.is_file() {
                e.read_to_string(&mut body).unwrap();
            }
            let xattr = e
                .pax_extensions()
                .unwrap()
                .map(|exts| {
                    exts.filter_map(|x| x.ok())
                        .filter(|x| x.key().unwrap().starts_with("SCHILY"))
                        .count()
                })
                .unwrap_or(0);
            seen.push(format!(
                "{path} {:?} {:o} {} {:?} {body:?} x{xattr}",
                kind,
                h.mode().unwrap(),
                e.header().uid().unwrap(),
                link
            ));
        }
        let long = format!("deep/{}/file", "d".repeat(120));
        assert_eq!(
            seen,
            [
                "a/ Directory 755 0 None \"\" x0".to_string(),
                "a/link Regular 640 3000000 None \"shared\" x0".to_string(),
                "a/x Regular 4755 0 None \"\" x1".to_string(),
                "deep/ Directory 755 0 None \"\" x0".to_string(),
                format!("deep/{}/ Directory 755 0 None \"\" x0", "d".repeat(120)),
                format!("{long} Link 640 3000000 Some(\"a/link\") \"\" x0"),
                "dev/ Directory 755 0 None \"\" x0".to_string(),
                "dev/null Char 666 0 None \"\" x0".to_string(),
                "e/ Directory 700 0 None \"\" x0".to_string(),
                "s Symlink 777 0 Some(\"a/x\") \"\" x0".to_string(),
            ]
        );
        assert_eq!(stats.entries, 10);
        assert_eq!(stats.body_bytes, 6);
    }

    /// `tree` with one more leaf `x` of `kind`.
    fn with_leaf(kind: LeafKind) -> Tree {
        let mut t = Tree::new(0);
        t.insert(
            &TreePath::parse("x").unwrap(),
            Inode::Leaf(Arc::new(Leaf {
                meta: Meta::root(0o644, 0),
                kind,
            })),
            &Meta::root(0o755, 0),
        )
        .unwrap();
        t
    }

    #[test]
    fn devices_past_the_octal_fields_are_refused() {
        let big = (MAX_DEVICE + 1) as u32;
        for (major, minor) in [(big, 1), (1, big), (u32::MAX, u32::MAX)] {
            for kind in [
                LeafKind::CharDevice { major, minor },
                LeafKind::BlockDevice { major, minor },
            ] {
                let err = write_tar(&with_leaf(kind), &mut Vec::new(), &TarOptions::default())
                    .unwrap_err();
                assert!(
                    err.to_string().starts_with(&format!(
                        "x: device {major}:{minor} does not fit tar's device fields"
                    )),
                    "{err}"
                );
            }
        }
        // The largest that fits reads back as written.
        let max = MAX_DEVICE as u32;
        let mut out = Vec::new();
        let kind = LeafKind::BlockDevice {
            major: max,
            minor: max,
        };
        write_tar(&with_leaf(kind), &mut out, &TarOptions::default()).unwrap();
        let mut ar = tar::Archive::new(&out[..]);
        let e = ar.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(e.header().device_major().unwrap(), Some(max));
        assert_eq!(e.header().device_minor().unwrap(), Some(max));
    }

    #[test]
    fn symlink_targets_with_a_nul_or_nothing_are_refused() {
        for target in [&b"a\0b"[..], b""] {
            use std::os::unix::ffi::OsStringExt;
            let kind = LeafKind::Symlink(std::ffi::OsString::from_vec(target.to_vec()));
            let err = write_tar(&with_leaf(kind), &mut Vec::new(), &TarOptions::default())
                .unwrap_err()
                .to_string();
            assert!(
                err.ends_with("contains a NUL byte, which ends it early for every reader")
                    || err == "x: a symlink needs a target; this one is empty",
                "{err}"
            );
        }
    }

    #[test]
    fn pax_record_length_counts_itself() {
        let mut v = Vec::new();
        pax_record(&mut v, "path", b"x");
        assert_eq!(v, b"9 path=x\n");
        let mut v = Vec::new();
        pax_record(&mut v, "path", &[b'a'; 93]);
        assert_eq!(&v[..4], b"103 ");
        assert_eq!(v.len(), 103);
    }

    #[test]
    fn clamp_and_filter() {
        let mut out = Vec::new();
        let keep = |p: &TreePath| !p.starts_with(&TreePath::parse("deep").unwrap());
        let opts = TarOptions {
            mtime_clamp: Some(4),
            filter: Some(&keep),
        };
        write_tar(&sample(), &mut out, &opts).unwrap();
        let mut ar = tar::Archive::new(&out[..]);
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            assert!(!e.path().unwrap().starts_with("deep"));
            assert!(e.header().mtime().unwrap() <= 4);
        }
    }
}
