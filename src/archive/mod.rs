//! Archives of a tree (newc cpio, tar), stream compression, and files that appear whole or not
//! at all. Used by the output formats, the image cache and the package builders alike.

pub mod atomic;
pub mod compress;
pub mod cpio;
pub mod pgzip;
pub mod sparse_tar;
pub mod stale;
pub mod tar;

use std::io::{self, Read, Write};

use crate::tree::{Content, TreePath};

/// How an archive (cpio or tar) is written.
#[derive(Clone, Copy, Default)]
pub struct ArchiveOptions<'a> {
    /// Later mtimes become this one (`SOURCE_DATE_EPOCH`).
    pub mtime_clamp: Option<i64>,
    /// Keep only the entries for which this returns true (directories included).
    pub filter: Option<&'a dyn Fn(&TreePath) -> bool>,
}

impl ArchiveOptions<'_> {
    /// The mtime written for an entry whose mtime is `mtime`.
    pub fn mtime(&self, mtime: i64) -> i64 {
        match self.mtime_clamp {
            Some(clamp) if mtime > clamp => clamp,
            _ => mtime,
        }
    }

    /// Whether the entry at `path` is written (the root never is).
    pub fn keeps(&self, path: &TreePath) -> bool {
        !path.is_root() && self.filter.is_none_or(|keep| keep(path))
    }
}

/// Why an archive or an output file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// Reading an entry's body or writing the archive failed.
    #[error("{path}")]
    Write {
        /// The entry (or output file) concerned.
        path: String,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
    /// The archive format cannot hold this entry.
    #[error("{path}: {reason}")]
    Unrepresentable {
        /// The entry.
        path: String,
        /// Which limit it exceeds.
        reason: String,
    },
    /// A file body was shorter or longer than the tree says (its source changed under us).
    #[error("{path}: expected {expected} bytes, read {read}")]
    SizeChanged {
        /// The entry.
        path: String,
        /// The size the tree holds.
        expected: u64,
        /// The bytes read.
        read: u64,
    },
    /// The output file or directory could not be created or committed.
    #[error("{path}")]
    File {
        /// The output path.
        path: String,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
    /// A name that cannot be an output file.
    #[error("{0}")]
    Usage(String),
}

/// Why the symlink target `target` cannot be written to an archive (`None` when it can): a
/// NUL byte ends it early for every reader, and Linux has no empty symlink.
pub(crate) fn bad_symlink_target(target: &[u8]) -> Option<String> {
    if target.is_empty() {
        Some("a symlink needs a target; this one is empty".into())
    } else if target.contains(&0) {
        Some(format!(
            "symlink target {:?} contains a NUL byte, which ends it early for every reader",
            crate::tree::abbreviate(target)
        ))
    } else {
        None
    }
}

/// Stream `content` into `out` through `buf`, checking the length matches.
pub(crate) fn copy_content<W: Write + ?Sized>(
    content: &Content,
    out: &mut W,
    buf: &mut [u8],
    path: &str,
) -> Result<u64, ArchiveError> {
    let err = |source| ArchiveError::Write {
        path: path.to_string(),
        source,
    };
    let mut reader = content.open().map_err(err)?;
    let mut total = 0u64;
    loop {
        let n = match reader.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(err(e)),
        };
        out.write_all(&buf[..n]).map_err(err)?;
        total += n as u64;
    }
    if total != content.len() {
        return Err(ArchiveError::SizeChanged {
            path: path.to_string(),
            expected: content.len(),
            read: total,
        });
    }
    Ok(total)
}
