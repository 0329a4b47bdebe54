//! Flatten OCI image layers into one [`Tree`], following the OCI image-spec layer rules
//! (`docs/flatten.md`): whiteouts and opaque directories hide lower layers only, hardlinks share
//! a leaf, directory metadata is replaced while children stay, and no path may climb out of the
//! root. Layer contents never touch the host filesystem: file bodies become extents of the
//! uncompressed layer tar.

mod entry;
mod pax;
mod window;

use std::fs::File;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::tree::{BlobFile, Content, Directory, Inode, Leaf, LeafKind, Meta, Tree, TreePath};
use entry::{EntryKind, LayerEntry, read_entries};
pub use window::Window;

/// Why a layer could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum FlattenError {
    /// The layer file could not be read.
    #[error("layer {layer}")]
    Read {
        /// The layer file.
        layer: String,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
    /// An entry is not acceptable in a layer.
    #[error("layer {layer}: {path}: {reason}")]
    Entry {
        /// The layer file.
        layer: String,
        /// The entry's path as written in the tar.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// What one layer held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerStats {
    /// Entries applied (whiteouts included).
    pub entries: u64,
    /// Bytes of regular file bodies.
    pub bytes: u64,
}

/// Flatten `layers` (uncompressed tars, bottom first) into a new tree.
pub fn flatten(layers: &[PathBuf]) -> Result<Tree, FlattenError> {
    let mut tree = Tree::new(0);
    for layer in layers {
        apply_layer(&mut tree, layer)?;
    }
    Ok(tree)
}

/// Apply the uncompressed layer tar at `layer` on top of `tree`.
pub fn apply_layer(tree: &mut Tree, layer: &Path) -> Result<LayerStats, FlattenError> {
    let name = layer.display().to_string();
    let read_err = |source| FlattenError::Read {
        layer: name.clone(),
        source,
    };
    let file = File::open(layer).map_err(read_err)?;
    let len = file.metadata().map_err(read_err)?.len();
    let window = Window::new(BufReader::with_capacity(1 << 16, file), 0, len).map_err(read_err)?;
    apply(tree, window, BlobFile::new(layer), 0, &name)
}

/// Apply a tar stored as a file's body (a kernel image's `kernel.tar`) on top of `tree`.
/// The body must live in a file on disk (an extent), which the new entries then point into.
pub fn apply_tar_content(tree: &mut Tree, content: &Content) -> Result<LayerStats, FlattenError> {
    match content {
        Content::Extent { file, offset, len } => {
            let name = format!("{}@{offset}", file.path().display());
            let read_err = |source| FlattenError::Read {
                layer: name.clone(),
                source,
            };
            let f = File::open(file.path()).map_err(read_err)?;
            let window = Window::new(BufReader::with_capacity(1 << 16, f), *offset, *len)
                .map_err(read_err)?;
            apply(tree, window, file.clone(), *offset, &name)
        }
        Content::Inline(bytes) => {
            let window = Window::new(io::Cursor::new(bytes.to_vec()), 0, bytes.len() as u64)
                .map_err(|source| FlattenError::Read {
                    layer: "inline tarball".into(),
                    source,
                })?;
            apply_inline(tree, window, bytes)
        }
    }
}

fn apply_inline(
    tree: &mut Tree,
    window: Window<io::Cursor<Vec<u8>>>,
    bytes: &[u8],
) -> Result<LayerStats, FlattenError> {
    let name = "inline tarball";
    let read_at = |offset: u64, buf: &mut [u8]| -> io::Result<()> {
        let src = usize::try_from(offset)
            .ok()
            .and_then(|start| bytes.get(start..start + buf.len()))
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::UnexpectedEof, "past the end of the tarball")
            })?;
        buf.copy_from_slice(src);
        Ok(())
    };
    let entries = read_entries(window, &read_at, name)?;
    apply_entries(tree, entries, name, &|offset, len| {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        let end = usize::try_from(offset + len)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        Content::inline(bytes[start..end].to_vec())
    })
}

fn apply<R: io::Read + io::Seek>(
    tree: &mut Tree,
    window: Window<R>,
    blob: Arc<BlobFile>,
    base: u64,
    name: &str,
) -> Result<LayerStats, FlattenError> {
    use std::os::unix::fs::FileExt;
    let file = File::open(blob.path()).map_err(|source| FlattenError::Read {
        layer: name.to_string(),
        source,
    })?;
    let read_at = |offset: u64, buf: &mut [u8]| file.read_exact_at(buf, base + offset);
    let entries = read_entries(window, &read_at, name)?;
    apply_entries(tree, entries, name, &|offset, len| Content::Extent {
        file: blob.clone(),
        offset: base + offset,
        len,
    })
}

/// Apply one layer's entries: first every whiteout and opaque marker (they hide what the lower
/// layers hold, whatever their place in the tar), then the entries in tar order.
fn apply_entries(
    tree: &mut Tree,
    entries: Vec<LayerEntry>,
    layer: &str,
    content: &dyn Fn(u64, u64) -> Content,
) -> Result<LayerStats, FlattenError> {
    let mut stats = LayerStats::default();
    let entry_err = |path: &TreePath, reason: String| FlattenError::Entry {
        layer: layer.to_string(),
        path: path.to_string(),
        reason,
    };
    for e in &entries {
        match &e.kind {
            EntryKind::Whiteout => {
                tree.remove(&e.path)
                    .map_err(|err| entry_err(&e.path, err.to_string()))?;
            }
            EntryKind::Opaque => {
                if let Some(dir) = tree.get_dir_mut(&e.path) {
                    dir.entries.clear();
                }
            }
            _ => {}
        }
    }
    for e in entries {
        stats.entries += 1;
        let parent_meta = Meta::root(0o755, e.meta.mtime);
        let inode = match e.kind {
            EntryKind::Whiteout | EntryKind::Opaque => continue,
            EntryKind::Directory => {
                if let Some(dir) = tree.get_dir_mut(&e.path) {
                    dir.meta = e.meta;
                    continue;
                }
                if e.path.is_root() {
                    continue;
                }
                Inode::Directory(Box::new(Directory::new(e.meta)))
            }
            EntryKind::Hardlink(target) => match tree.get(&target) {
                Some(Inode::Leaf(leaf)) => Inode::Leaf(leaf.clone()),
                Some(Inode::Directory(_)) => {
                    return Err(entry_err(
                        &e.path,
                        format!("hardlink to a directory ({target})"),
                    ));
                }
                None => {
                    return Err(entry_err(
                        &e.path,
                        format!("hardlink to {target}, which does not exist"),
                    ));
                }
            },
            EntryKind::File { offset, len } => {
                stats.bytes += len;
                leaf(e.meta, LeafKind::File(content(offset, len)))
            }
            EntryKind::Symlink(target) => leaf(e.meta, LeafKind::Symlink(target)),
            EntryKind::CharDevice(major, minor) => {
                leaf(e.meta, LeafKind::CharDevice { major, minor })
            }
            EntryKind::BlockDevice(major, minor) => {
                leaf(e.meta, LeafKind::BlockDevice { major, minor })
            }
            EntryKind::Fifo => leaf(e.meta, LeafKind::Fifo),
        };
        if e.path.is_root() {
            return Err(entry_err(
                &e.path,
                "a non-directory cannot replace the root".into(),
            ));
        }
        tree.insert(&e.path, inode, &parent_meta)
            .map_err(|err| entry_err(&e.path, format!("cannot be placed: {err}")))?;
    }
    Ok(stats)
}

fn leaf(meta: Meta, kind: LeafKind) -> Inode {
    Inode::Leaf(Arc::new(Leaf { meta, kind }))
}

#[cfg(test)]
mod tests;
