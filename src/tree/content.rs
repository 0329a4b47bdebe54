//! Where the bytes of a regular file are: a small inline buffer, or a byte range of a file on
//! disk (an uncompressed layer tar in the cache, or a file named by the spec).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A file on disk that tree contents point into. Shared by every entry of one layer.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct BlobFile {
    path: PathBuf,
}

impl BlobFile {
    /// A handle on the file at `path` (opened lazily by readers).
    pub fn new(path: impl Into<PathBuf>) -> Arc<Self> {
        Arc::new(BlobFile { path: path.into() })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The body of a regular file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// Bytes held in memory (generated files: config.json, cmdline, small spec files).
    Inline(Arc<[u8]>),
    /// `len` bytes at `offset` of a file on disk.
    Extent {
        /// The file holding the bytes.
        file: Arc<BlobFile>,
        /// Where the bytes start.
        offset: u64,
        /// How many bytes.
        len: u64,
    },
}

impl Content {
    /// In-memory content.
    pub fn inline(bytes: impl Into<Arc<[u8]>>) -> Self {
        Content::Inline(bytes.into())
    }

    /// Size in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Content::Inline(b) => b.len() as u64,
            Content::Extent { len, .. } => *len,
        }
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A reader over exactly the body's bytes. Fails if the backing file is shorter than the
    /// extent claims (a truncated cache blob), rather than yielding a short body.
    pub fn open(&self) -> io::Result<Box<dyn Read + Send + '_>> {
        match self {
            Content::Inline(bytes) => Ok(Box::new(&bytes[..])),
            Content::Extent { file, offset, len } => {
                let mut f = File::open(file.path()).map_err(|e| {
                    io::Error::new(e.kind(), format!("{}: {e}", file.path().display()))
                })?;
                let size = f.metadata()?.len();
                if offset.checked_add(*len).is_none_or(|end| end > size) {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "{}: {len} bytes at offset {offset} are past its end ({size} bytes)",
                            file.path().display()
                        ),
                    ));
                }
                f.seek(SeekFrom::Start(*offset))?;
                Ok(Box::new(f.take(*len)))
            }
        }
    }

    /// Read the whole body into memory (for small files only: configs, scripts).
    pub fn read_to_vec(&self) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(usize::try_from(self.len()).unwrap_or(0));
        self.open()?.read_to_end(&mut out)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn extent_reads_its_range_and_refuses_past_end() {
        let mut tmp = tempfile::NamedTempFile::new().unwrap();
        tmp.write_all(b"0123456789").unwrap();
        let blob = BlobFile::new(tmp.path());
        let c = Content::Extent {
            file: blob.clone(),
            offset: 3,
            len: 4,
        };
        assert_eq!(c.read_to_vec().unwrap(), b"3456");
        let past = Content::Extent {
            file: blob,
            offset: 8,
            len: 4,
        };
        assert!(past.open().is_err());
    }
}
