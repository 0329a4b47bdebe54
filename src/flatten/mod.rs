//! Flatten OCI image layers into one [`Tree`], following the OCI image-spec layer rules
//! (`docs/flatten.md`): whiteouts and opaque directories hide lower layers only, hardlinks share
//! a leaf, directory metadata is replaced while children stay, and no path may climb out of the
//! root. Layer contents never touch the host filesystem: file bodies become extents of the
//! uncompressed layer tar.

mod entry;
mod pax;
mod window;

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::limits::{DEFAULT_IMAGE_ENTRIES, IMAGE_ENTRIES_FLAG};
use crate::tree::{BlobFile, Content, Directory, Inode, Leaf, LeafKind, Meta, Tree, TreePath};
use entry::{EntryKind, LayerEntry, read_entries};
use pax::ReadAt;
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
    /// The image's layers hold more entries than one image may.
    #[error(
        "layer {layer}: the image holds more than {limit} entries, the limit for one image (raise it with {IMAGE_ENTRIES_FLAG})"
    )]
    TooManyEntries {
        /// The layer being read when the count passed the limit.
        layer: String,
        /// The limit.
        limit: u64,
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

/// How many entries the layers of one image may hold together ([`crate::limits::Limits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryBudget {
    limit: u64,
    used: u64,
}

impl EntryBudget {
    /// A budget of `limit` entries.
    pub fn new(limit: u64) -> Self {
        EntryBudget { limit, used: 0 }
    }

    /// Entries counted so far.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Count one more entry of `layer`; fails once the count passes the limit.
    fn take(&mut self, layer: &str) -> Result<(), FlattenError> {
        self.used += 1;
        if self.used > self.limit {
            return Err(FlattenError::TooManyEntries {
                layer: layer.to_string(),
                limit: self.limit,
            });
        }
        Ok(())
    }
}

impl Default for EntryBudget {
    fn default() -> Self {
        EntryBudget::new(DEFAULT_IMAGE_ENTRIES)
    }
}

/// Flatten `layers` (uncompressed tars, bottom first) into a new tree, within the default
/// entry budget.
pub fn flatten(layers: &[PathBuf]) -> Result<Tree, FlattenError> {
    let mut tree = Tree::new(0);
    let mut budget = EntryBudget::default();
    for layer in layers {
        apply_layer_within(&mut tree, layer, &mut budget)?;
    }
    Ok(tree)
}

/// Apply the uncompressed layer tar at `layer` on top of `tree`, within the default entry
/// budget.
pub fn apply_layer(tree: &mut Tree, layer: &Path) -> Result<LayerStats, FlattenError> {
    apply_layer_within(tree, layer, &mut EntryBudget::default())
}

/// Apply the uncompressed layer tar at `layer` on top of `tree`, counting its entries
/// against `budget` (shared by the layers of one image).
pub fn apply_layer_within(
    tree: &mut Tree,
    layer: &Path,
    budget: &mut EntryBudget,
) -> Result<LayerStats, FlattenError> {
    let name = layer.display().to_string();
    let read_err = |source| FlattenError::Read {
        layer: name.clone(),
        source,
    };
    let file = File::open(layer).map_err(read_err)?;
    let len = file.metadata().map_err(read_err)?.len();
    let window = Window::new(BufReader::with_capacity(1 << 16, file), 0, len).map_err(read_err)?;
    apply(tree, window, BlobFile::new(layer), 0, &name, budget)
}

/// Apply a tar stored as a file's body (a kernel image's `kernel.tar`) on top of `tree`.
/// The body must live in a file on disk (an extent), which the new entries then point into.
pub fn apply_tar_content(tree: &mut Tree, content: &Content) -> Result<LayerStats, FlattenError> {
    let mut budget = EntryBudget::default();
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
            apply(tree, window, file.clone(), *offset, &name, &mut budget)
        }
        Content::Inline(bytes) => {
            let name = "inline tarball";
            let mut window = Window::new(io::Cursor::new(&bytes[..]), 0, bytes.len() as u64)
                .map_err(|source| FlattenError::Read {
                    layer: name.into(),
                    source,
                })?;
            let read_at = |offset: u64, buf: &mut [u8]| -> io::Result<()> {
                let src = usize::try_from(offset)
                    .ok()
                    .and_then(|start| bytes.get(start..start.checked_add(buf.len())?))
                    .ok_or_else(|| {
                        io::Error::new(io::ErrorKind::UnexpectedEof, "past the end of the tarball")
                    })?;
                buf.copy_from_slice(src);
                Ok(())
            };
            apply_entries(
                tree,
                &mut window,
                &read_at,
                name,
                &mut budget,
                &|offset, len| {
                    let start = usize::try_from(offset)
                        .unwrap_or(usize::MAX)
                        .min(bytes.len());
                    let end = usize::try_from(offset.saturating_add(len))
                        .unwrap_or(usize::MAX)
                        .min(bytes.len());
                    Content::inline(bytes[start..end].to_vec())
                },
            )
        }
    }
}

fn apply<R: Read + Seek>(
    tree: &mut Tree,
    mut window: Window<R>,
    blob: Arc<BlobFile>,
    base: u64,
    name: &str,
    budget: &mut EntryBudget,
) -> Result<LayerStats, FlattenError> {
    use std::os::unix::fs::FileExt;
    let file = File::open(blob.path()).map_err(|source| FlattenError::Read {
        layer: name.to_string(),
        source,
    })?;
    let read_at = |offset: u64, buf: &mut [u8]| file.read_exact_at(buf, base + offset);
    apply_entries(tree, &mut window, &read_at, name, budget, &|offset, len| {
        Content::Extent {
            file: blob.clone(),
            offset: base + offset,
            len,
        }
    })
}

/// Apply one layer's entries, reading the tar twice so that no list of its entries is held:
/// first every whiteout and opaque marker (they hide what the lower layers hold, whatever
/// their place in the tar; every entry is counted against `budget` then), then the entries
/// in tar order.
fn apply_entries<R: Read + Seek>(
    tree: &mut Tree,
    reader: &mut R,
    read_at: &ReadAt<'_>,
    layer: &str,
    budget: &mut EntryBudget,
    content: &dyn Fn(u64, u64) -> Content,
) -> Result<LayerStats, FlattenError> {
    let mut stats = LayerStats::default();
    let entry_err = |path: &TreePath, reason: String| FlattenError::Entry {
        layer: layer.to_string(),
        path: path.to_string(),
        reason,
    };
    let rewind = |reader: &mut R| {
        reader
            .seek(SeekFrom::Start(0))
            .map_err(|source| FlattenError::Read {
                layer: layer.to_string(),
                source,
            })
    };
    let len = reader
        .seek(SeekFrom::End(0))
        .map_err(|source| FlattenError::Read {
            layer: layer.to_string(),
            source,
        })?;
    pax::check_extension_headers(read_at, len).map_err(|source| FlattenError::Read {
        layer: layer.to_string(),
        source,
    })?;
    rewind(reader)?;
    read_entries(&mut *reader, len, read_at, layer, &mut |e| {
        budget.take(layer)?;
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
        Ok(())
    })?;
    rewind(reader)?;
    read_entries(&mut *reader, len, read_at, layer, &mut |e: LayerEntry| {
        stats.entries += 1;
        let parent_meta = Meta::root(0o755, e.meta.mtime);
        let inode = match e.kind {
            EntryKind::Whiteout | EntryKind::Opaque => return Ok(()),
            EntryKind::Directory => {
                if let Some(dir) = tree.get_dir_mut(&e.path) {
                    dir.meta = e.meta;
                    return Ok(());
                }
                if e.path.is_root() {
                    return Ok(());
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
        Ok(())
    })?;
    Ok(stats)
}

fn leaf(meta: Meta, kind: LeafKind) -> Inode {
    Inode::Leaf(Arc::new(Leaf { meta, kind }))
}

#[cfg(test)]
mod tests;
