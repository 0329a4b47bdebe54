//! Reading a layer tar entry by entry: paths normalised, whiteouts recognised, PAX records
//! applied, bodies located (offset and length) without being read. Entries are handed over
//! one at a time, so reading a layer holds one entry, not the whole list.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{Read, Seek};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use tar::EntryType;

use super::FlattenError;
use super::pax::{ReadAt, read_pax};
use crate::tree::{Meta, TreePath};

/// What a layer entry does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum EntryKind {
    /// Remove the path from lower layers (`.wh.NAME`).
    Whiteout,
    /// Hide the lower layers' children of this directory (`.wh..wh..opq`).
    Opaque,
    /// A directory.
    Directory,
    /// A regular file whose body is `len` bytes at `offset` of the tar.
    File {
        /// Body offset in the tar.
        offset: u64,
        /// Body length.
        len: u64,
    },
    /// Another name for an existing file.
    Hardlink(TreePath),
    /// A symbolic link.
    Symlink(OsString),
    /// A character device.
    CharDevice(u32, u32),
    /// A block device.
    BlockDevice(u32, u32),
    /// A named pipe.
    Fifo,
}

/// One entry of a layer.
#[derive(Debug, Clone)]
pub(super) struct LayerEntry {
    /// Normalised path (for whiteouts: of the thing hidden; for opaque markers: the directory).
    pub path: TreePath,
    pub meta: Meta,
    pub kind: EntryKind,
}

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";

/// Hand every entry of the tar of `len` bytes read from `reader` to `visit`, in tar order;
/// `layer` names it in errors. `read_at` reads the same tar by offset, for the PAX records
/// (read by their length prefix: the tar crate splits them at newlines, which breaks binary
/// values such as `security.capability` xattrs). A body that runs past the end of the tar (a
/// truncated layer) is an error: the tar reader seeks over bodies without reading them.
pub(super) fn read_entries<R: Read + Seek>(
    reader: R,
    len: u64,
    read_at: &ReadAt<'_>,
    layer: &str,
    visit: &mut dyn FnMut(LayerEntry) -> Result<(), FlattenError>,
) -> Result<(), FlattenError> {
    let read_err = |source| FlattenError::Read {
        layer: layer.to_string(),
        source,
    };
    let mut archive = tar::Archive::new(reader);
    let mut previous_end = 0u64;
    for entry in archive.entries_with_seek().map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        let header_at = entry.raw_header_position();
        let pax = read_pax(read_at, previous_end, header_at).map_err(read_err)?;
        let body_end = entry.raw_file_position().checked_add(entry.size());
        if body_end.is_none_or(|end| end > len) {
            return Err(read_err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "truncated: the entry {} ends past the end of the layer ({len} bytes)",
                    crate::tree::abbreviate(&entry.path_bytes())
                ),
            )));
        }
        previous_end = entry.raw_file_position() + entry.size().div_ceil(512) * 512;
        let raw_path = match pax.get(&b"path"[..]) {
            Some(p) => p.clone(),
            None => entry.path_bytes().into_owned(),
        };
        let shown = crate::tree::abbreviate(&raw_path);
        let bad = |reason: String| FlattenError::Entry {
            layer: layer.to_string(),
            path: shown.clone(),
            reason,
        };
        let header = entry.header().clone();
        let entry_type = header.entry_type();
        if matches!(entry_type, EntryType::XGlobalHeader) {
            continue;
        }
        let path = TreePath::parse(OsString::from_vec(raw_path.clone()))
            .map_err(|e| bad(e.to_string()))?;
        let mut meta = Meta {
            mode: header.mode().map_err(|e| bad(e.to_string()))? & 0o7777,
            uid: u32::try_from(header.uid().map_err(|e| bad(e.to_string()))?)
                .map_err(|e| bad(e.to_string()))?,
            gid: u32::try_from(header.gid().map_err(|e| bad(e.to_string()))?)
                .map_err(|e| bad(e.to_string()))?,
            mtime: i64::try_from(header.mtime().map_err(|e| bad(e.to_string()))?)
                .unwrap_or(i64::MAX),
            xattrs: BTreeMap::new(),
        };
        if let Some(size) = pax.get(&b"size"[..])
            && std::str::from_utf8(size)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                != Some(entry.size())
        {
            return Err(bad("PAX size record the tar reader did not apply".into()));
        }
        if pax.keys().any(|k| k.starts_with(b"GNU.sparse.")) {
            return Err(bad("sparse files are not supported in layers".into()));
        }
        let number = |v: &[u8]| -> Option<i64> {
            let text = std::str::from_utf8(v).ok()?;
            let whole = text.split('.').next().unwrap_or(text);
            let n: i64 = whole.parse().ok()?;
            // Negative fractional times round down.
            Some(
                if n < 0
                    && text.contains('.')
                    && text
                        .split('.')
                        .nth(1)
                        .is_some_and(|f| f.bytes().any(|b| b != b'0'))
                {
                    n - 1
                } else {
                    n
                },
            )
        };
        for (key, value) in &pax {
            match &key[..] {
                b"uid" => {
                    meta.uid = number(value)
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| bad("bad PAX uid".into()))?
                }
                b"gid" => {
                    meta.gid = number(value)
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| bad("bad PAX gid".into()))?
                }
                b"mtime" => {
                    meta.mtime = number(value).ok_or_else(|| bad("bad PAX mtime".into()))?
                }
                _ => {
                    if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                        meta.xattrs
                            .insert(String::from_utf8_lossy(name).into_owned(), value.clone());
                    }
                }
            }
        }
        // Whiteouts are recognised by name, whatever their type.
        if let Some(name) = path.file_name() {
            let name = name.as_encoded_bytes();
            if name == OPAQUE {
                let dir = path.split_last().map(|(p, _)| p).unwrap_or_default();
                visit(LayerEntry {
                    path: dir,
                    meta,
                    kind: EntryKind::Opaque,
                })?;
                continue;
            }
            if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
                if hidden.starts_with(WHITEOUT_PREFIX) {
                    // Other `.wh..wh.` names are internal to the layer tool that made them.
                    continue;
                }
                if hidden.is_empty() {
                    return Err(bad("whiteout without a name".into()));
                }
                let (mut target, _) = path.split_last().unwrap_or_default();
                target.push(std::ffi::OsStr::from_bytes(hidden));
                visit(LayerEntry {
                    path: target,
                    meta,
                    kind: EntryKind::Whiteout,
                })?;
                continue;
            }
        }
        let kind = match entry_type {
            EntryType::Regular | EntryType::Continuous => EntryKind::File {
                offset: entry.raw_file_position(),
                len: entry.size(),
            },
            EntryType::Directory => EntryKind::Directory,
            EntryType::Link => {
                let target = match pax.get(&b"linkpath"[..]) {
                    Some(l) => l.clone(),
                    None => entry
                        .link_name_bytes()
                        .ok_or_else(|| bad("hardlink without a target".into()))?
                        .into_owned(),
                };
                let target = TreePath::parse(OsString::from_vec(target))
                    .map_err(|e| bad(format!("hardlink target: {e}")))?;
                EntryKind::Hardlink(target)
            }
            EntryType::Symlink => {
                // The PAX record first: the tar reader splits PAX records at newlines, so its
                // own view of a `linkpath` holding one is cut short.
                let target = match pax.get(&b"linkpath"[..]) {
                    Some(l) => l.clone(),
                    None => entry
                        .link_name_bytes()
                        .map(|t| t.into_owned())
                        .unwrap_or_default(),
                };
                if target.is_empty() {
                    return Err(bad("symlink without a target".into()));
                }
                if target.contains(&0) {
                    return Err(bad(format!(
                        "symlink target {:?} contains a NUL byte",
                        crate::tree::abbreviate(&target)
                    )));
                }
                EntryKind::Symlink(OsString::from_vec(target))
            }
            EntryType::Char | EntryType::Block => {
                let major = header
                    .device_major()
                    .map_err(|e| bad(e.to_string()))?
                    .unwrap_or(0);
                let minor = header
                    .device_minor()
                    .map_err(|e| bad(e.to_string()))?
                    .unwrap_or(0);
                if entry_type == EntryType::Char {
                    EntryKind::CharDevice(major, minor)
                } else {
                    EntryKind::BlockDevice(major, minor)
                }
            }
            EntryType::Fifo => EntryKind::Fifo,
            EntryType::GNUSparse => {
                return Err(bad("sparse files are not supported in layers".into()));
            }
            other => return Err(bad(format!("unsupported tar entry type {other:?}"))),
        };
        visit(LayerEntry { path, meta, kind })?;
    }
    Ok(())
}
