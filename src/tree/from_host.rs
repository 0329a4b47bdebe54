//! Bring files from the host into a tree: the `files:` entries of a spec that name a `source`,
//! and local fixtures. Bodies stay on disk ([`Content::Extent`] over the host file).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{BlobFile, Content, Directory, Inode, Leaf, LeafKind, Meta};

/// Why a host file could not be read into the tree.
#[derive(Debug, thiserror::Error)]
pub enum FromHostError {
    /// Reading the file or its metadata failed.
    #[error("{path}")]
    Io {
        /// The host path.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
    /// Sockets and other special files cannot go into an image.
    #[error("{path}: unsupported file type (socket)")]
    Unsupported {
        /// The host path.
        path: PathBuf,
    },
}

/// How host metadata is mapped into the tree.
#[derive(Debug, Clone, Copy)]
pub struct HostImport {
    /// Owner to give every entry (host owners are not meaningful in an image).
    pub uid: u32,
    /// Group to give every entry.
    pub gid: u32,
    /// The mtime every entry gets (reproducible builds do not depend on host mtimes).
    pub mtime: i64,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> FromHostError + '_ {
    move |source| FromHostError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Read the host file, symlink, device or directory (recursively) at `path` as a tree inode.
/// Permission bits come from the host; ownership and mtime from `opts`.
pub fn import_host_path(path: &Path, opts: &HostImport) -> Result<Inode, FromHostError> {
    let md = fs::symlink_metadata(path).map_err(io_err(path))?;
    let meta = Meta {
        mode: md.mode() & 0o7777,
        uid: opts.uid,
        gid: opts.gid,
        mtime: opts.mtime,
        xattrs: BTreeMap::new(),
    };
    let ft = md.file_type();
    let kind = if ft.is_dir() {
        let mut dir = Directory::new(meta);
        let mut names: Vec<_> = fs::read_dir(path)
            .map_err(io_err(path))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(io_err(path))?;
        names.sort();
        for name in names {
            let child = import_host_path(&path.join(&name), opts)?;
            dir.entries.insert(name, child);
        }
        return Ok(Inode::Directory(Box::new(dir)));
    } else if ft.is_file() {
        LeafKind::File(Content::Extent {
            file: BlobFile::new(path),
            offset: 0,
            len: md.len(),
        })
    } else if ft.is_symlink() {
        LeafKind::Symlink(fs::read_link(path).map_err(io_err(path))?.into_os_string())
    } else if ft.is_char_device() || ft.is_block_device() {
        let (major, minor) = split_dev(md.rdev());
        if ft.is_char_device() {
            LeafKind::CharDevice { major, minor }
        } else {
            LeafKind::BlockDevice { major, minor }
        }
    } else if ft.is_fifo() {
        LeafKind::Fifo
    } else {
        return Err(FromHostError::Unsupported {
            path: path.to_owned(),
        });
    };
    Ok(Inode::Leaf(Arc::new(Leaf { meta, kind })))
}

/// Split a Linux `dev_t` into major and minor numbers.
fn split_dev(dev: u64) -> (u32, u32) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major as u32, minor as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn imports_a_directory_with_files_and_links() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        fs::write(dir.path().join("sub/a"), b"hello").unwrap();
        fs::set_permissions(dir.path().join("sub/a"), fs::Permissions::from_mode(0o751)).unwrap();
        std::os::unix::fs::symlink("sub/a", dir.path().join("l")).unwrap();
        let opts = HostImport {
            uid: 0,
            gid: 0,
            mtime: 7,
        };
        let Inode::Directory(root) = import_host_path(dir.path(), &opts).unwrap() else {
            panic!("expected a directory");
        };
        let sub = root.get_dir("sub".as_ref()).unwrap();
        let Some(Inode::Leaf(a)) = sub.get("a".as_ref()) else {
            panic!("no file")
        };
        assert_eq!(a.meta.mode, 0o751);
        assert_eq!(a.meta.mtime, 7);
        let LeafKind::File(c) = &a.kind else {
            panic!("not a file")
        };
        assert_eq!(c.read_to_vec().unwrap(), b"hello");
        let Some(Inode::Leaf(l)) = root.get("l".as_ref()) else {
            panic!("no link")
        };
        assert_eq!(l.kind, LeafKind::Symlink("sub/a".into()));
    }

    #[test]
    fn missing_path_names_it() {
        let err = import_host_path(
            Path::new("/nonexistent/x"),
            &HostImport {
                uid: 0,
                gid: 0,
                mtime: 0,
            },
        )
        .unwrap_err();
        assert!(
            crate::error::chain(&err).starts_with("/nonexistent/x: "),
            "{err}"
        );
    }

    #[test]
    fn dev_numbers_split_like_glibc() {
        // makedev(1, 3) and makedev(259, 65536)
        assert_eq!(split_dev(0x103), (1, 3));
        let dev = ((259u64 & 0xfff) << 8) | ((65536u64 & !0xff) << 12);
        assert_eq!(split_dev(dev), (259, 65536));
    }
}
