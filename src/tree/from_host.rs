//! Bring files from the host into a tree, the way a spec's `files[].source` is read (LinuxKit
//! reads the file a symlink names): the source itself is followed to a regular file or a
//! directory; a directory is copied whole, its symlinks kept as symlinks. Bodies stay on disk
//! ([`Content::Extent`] over the host file) and are streamed by the writers, never held in
//! memory, whatever their size.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{Mode, OFlags};

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
    /// The path is a loop of symbolic links (or a chain too long to follow).
    #[error("{path}: a loop of symbolic links")]
    SymlinkLoop {
        /// The host path.
        path: PathBuf,
    },
    /// FIFOs, devices and sockets cannot be copied: only their contents could be, and those
    /// never end or are not there.
    #[error("{path}: a {kind}, not a regular file or directory")]
    Unsupported {
        /// The host path (the symlink's target when the source is a symlink).
        path: PathBuf,
        /// What it is (`FIFO`, `character device`, ...).
        kind: &'static str,
    },
    /// A file of a kernel filesystem (`/proc`, `/sys`, ...): its size is not known until it
    /// is read, and it describes the build machine, not the image.
    #[error("{path}: on {fs}, a kernel filesystem whose files cannot be copied into an image")]
    KernelFilesystem {
        /// The host path.
        path: PathBuf,
        /// The filesystem (`proc`, `sysfs`, ...).
        fs: &'static str,
    },
    /// A directory appears inside itself (a bind mount or a filesystem that loops).
    #[error("{path}: the directory contains itself")]
    DirectoryLoop {
        /// The host path.
        path: PathBuf,
    },
    /// A file inside a directory source would have a path in the image longer than Linux
    /// allows.
    #[error(
        "{path}: its path in the image would be {bytes} bytes, more than the {max} Linux allows \
         a path (PATH_MAX)",
        max = crate::limits::PATH_MAX
    )]
    PathTooLong {
        /// The host path.
        path: PathBuf,
        /// The length its image path would have.
        bytes: usize,
    },
    /// A directory source holds more entries than one image may.
    #[error(
        "{path}: holds more than {limit} entries, the limit for one image",
        limit = crate::limits::DEFAULT_IMAGE_ENTRIES
    )]
    TooManyEntries {
        /// The directory source.
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

/// A source path resolved: what [`import_host_path`] will copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSource {
    /// The path with every symlink resolved.
    pub path: PathBuf,
    /// A directory (else a regular file).
    pub is_dir: bool,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> FromHostError + '_ {
    move |source| FromHostError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The name of a file type that cannot be copied.
fn kind_name(ft: fs::FileType) -> &'static str {
    if ft.is_fifo() {
        "FIFO"
    } else if ft.is_char_device() {
        "character device"
    } else if ft.is_block_device() {
        "block device"
    } else if ft.is_socket() {
        "socket"
    } else {
        "special file"
    }
}

/// Kernel filesystems by `statfs` magic (`linux/magic.h`): their files report sizes that are
/// not their contents (0 for `/proc/self/environ`, 4096 for a sysfs attribute), and some
/// block when read.
const KERNEL_FILESYSTEMS: [(u64, &str); 16] = [
    (0x9fa0, "proc"),
    (0x6265_6572, "sysfs"),
    (0x6462_6720, "debugfs"),
    (0x7472_6163, "tracefs"),
    (0x7363_6673, "securityfs"),
    (0x6265_6570, "configfs"),
    (0x0027_e0eb, "cgroup"),
    (0x6367_7270, "cgroup2"),
    (0xcafe_4a11, "bpf"),
    (0x6165_676c, "pstore"),
    (0xde5e_81e4, "efivarfs"),
    (0xf97c_ff8c, "selinuxfs"),
    (0x4341_5d53, "smackfs"),
    (0x4249_4e4d, "binfmt_misc"),
    (0x6e73_6673, "nsfs"),
    (0x1980_0202, "mqueue"),
];

fn kernel_filesystem(stat: &rustix::fs::StatFs) -> Option<&'static str> {
    // `f_type` is a signed long on most architectures and an unsigned int on s390x; the
    // magic numbers are 32-bit.
    let magic = stat.f_type as u64 & 0xffff_ffff;
    KERNEL_FILESYSTEMS
        .iter()
        .find(|(m, _)| *m == magic)
        .map(|(_, name)| *name)
}

fn check_filesystem(
    path: &Path,
    stat: io::Result<rustix::fs::StatFs>,
) -> Result<(), FromHostError> {
    let stat = stat.map_err(io_err(path))?;
    match kernel_filesystem(&stat) {
        Some(fs) => Err(FromHostError::KernelFilesystem {
            path: path.to_owned(),
            fs,
        }),
        None => Ok(()),
    }
}

/// Resolve `path` as a `files` source: follow symlinks, and check that the target is a regular
/// file or a directory that can be opened and is not on a kernel filesystem. Nothing but the
/// target is opened (a device is never opened), and it is opened without blocking.
pub fn resolve_source(path: &Path) -> Result<HostSource, FromHostError> {
    let resolved = fs::canonicalize(path).map_err(|e| {
        if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
            FromHostError::SymlinkLoop {
                path: path.to_owned(),
            }
        } else {
            io_err(path)(e)
        }
    })?;
    let ft = fs::metadata(&resolved)
        .map_err(io_err(&resolved))?
        .file_type();
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
    let flags = if ft.is_dir() {
        flags | OFlags::DIRECTORY
    } else if ft.is_file() {
        flags
    } else {
        return Err(FromHostError::Unsupported {
            path: resolved,
            kind: kind_name(ft),
        });
    };
    let fd = rustix::fs::open(&resolved, flags, Mode::empty())
        .map_err(|e| io_err(&resolved)(e.into()))?;
    check_filesystem(&resolved, rustix::fs::fstatfs(&fd).map_err(Into::into))?;
    Ok(HostSource {
        path: resolved,
        is_dir: ft.is_dir(),
    })
}

fn host_meta(md: &fs::Metadata, opts: &HostImport) -> Meta {
    Meta {
        mode: md.mode() & 0o7777,
        uid: opts.uid,
        gid: opts.gid,
        mtime: opts.mtime,
        xattrs: BTreeMap::new(),
    }
}

fn file_leaf(path: &Path, md: &fs::Metadata, opts: &HostImport) -> Inode {
    Inode::Leaf(Arc::new(Leaf {
        meta: host_meta(md, opts),
        kind: LeafKind::File(Content::Extent {
            file: BlobFile::new(path),
            offset: 0,
            len: md.len(),
        }),
    }))
}

/// Read the host file or directory at `path` as a tree inode, as a `files` source is read
/// ([`resolve_source`]): a symlink is followed; a directory is copied recursively, its
/// regular files, directories and symlinks (kept as symlinks, so nothing outside it is
/// reached and no link can loop); any FIFO, device or socket, a file of a kernel filesystem or
/// a directory inside itself is refused, naming its path. Permission bits come from the host;
/// ownership and mtime from `opts`.
pub fn import_host_path(path: &Path, opts: &HostImport) -> Result<Inode, FromHostError> {
    import_host_path_at(path, opts, 0)
}

/// [`import_host_path`] for a source copied to a path of `at_len` bytes in the image: a
/// directory source's entries must keep their image paths within [`PATH_MAX`], and it may hold
/// at most [`DEFAULT_IMAGE_ENTRIES`] entries.
///
/// [`PATH_MAX`]: crate::limits::PATH_MAX
/// [`DEFAULT_IMAGE_ENTRIES`]: crate::limits::DEFAULT_IMAGE_ENTRIES
pub fn import_host_path_at(
    path: &Path,
    opts: &HostImport,
    at_len: usize,
) -> Result<Inode, FromHostError> {
    let source = resolve_source(path)?;
    let md = fs::metadata(&source.path).map_err(io_err(&source.path))?;
    if !source.is_dir {
        return Ok(file_leaf(&source.path, &md, opts));
    }
    let mut walk = DirWalk {
        opts,
        source: &source.path,
        ancestors: Vec::new(),
        entries: 0,
    };
    import_dir(&source.path, &md, at_len, &mut walk).map(|d| Inode::Directory(Box::new(d)))
}

/// The state of one directory source's copy.
struct DirWalk<'a> {
    opts: &'a HostImport,
    /// The directory source, for the entry limit's error.
    source: &'a Path,
    /// The (device, inode) pairs of the directories above the one being copied.
    ancestors: Vec<(u64, u64)>,
    /// Entries copied so far.
    entries: u64,
}

/// Copy the directory at `path` (metadata `md`), whose path in the image is `image_len`
/// bytes long.
fn import_dir(
    path: &Path,
    md: &fs::Metadata,
    image_len: usize,
    walk: &mut DirWalk<'_>,
) -> Result<Directory, FromHostError> {
    let opts = walk.opts;
    let id = (md.dev(), md.ino());
    if walk.ancestors.contains(&id) {
        return Err(FromHostError::DirectoryLoop {
            path: path.to_owned(),
        });
    }
    let mut dir = Directory::new(host_meta(md, opts));
    let mut names: Vec<_> = fs::read_dir(path)
        .map_err(io_err(path))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(io_err(path))?;
    names.sort();
    walk.ancestors.push(id);
    for name in names {
        let child = path.join(&name);
        walk.entries += 1;
        if walk.entries > crate::limits::DEFAULT_IMAGE_ENTRIES {
            return Err(FromHostError::TooManyEntries {
                path: walk.source.to_owned(),
            });
        }
        let child_len = image_len + usize::from(image_len > 0) + name.len();
        if child_len > crate::limits::PATH_MAX {
            return Err(FromHostError::PathTooLong {
                path: child,
                bytes: child_len,
            });
        }
        let cmd = fs::symlink_metadata(&child).map_err(io_err(&child))?;
        let ft = cmd.file_type();
        if (ft.is_dir() || ft.is_file()) && cmd.dev() != md.dev() {
            // Another filesystem is mounted here: it may be a kernel one.
            check_filesystem(&child, rustix::fs::statfs(&child).map_err(Into::into))?;
        }
        let inode = if ft.is_dir() {
            Inode::Directory(Box::new(import_dir(&child, &cmd, child_len, walk)?))
        } else if ft.is_file() {
            file_leaf(&child, &cmd, opts)
        } else if ft.is_symlink() {
            let target = fs::read_link(&child).map_err(io_err(&child))?;
            Inode::Leaf(Arc::new(Leaf {
                meta: host_meta(&cmd, opts),
                kind: LeafKind::Symlink(target.into_os_string()),
            }))
        } else {
            return Err(FromHostError::Unsupported {
                path: child,
                kind: kind_name(ft),
            });
        };
        dir.entries.insert(name, inode);
    }
    walk.ancestors.pop();
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    const OPTS: HostImport = HostImport {
        uid: 0,
        gid: 0,
        mtime: 7,
    };

    fn body(inode: &Inode) -> Vec<u8> {
        match inode {
            Inode::Leaf(l) => match &l.kind {
                LeafKind::File(c) => c.read_to_vec().unwrap(),
                other => panic!("not a file: {other:?}"),
            },
            Inode::Directory(_) => panic!("a directory"),
        }
    }

    #[test]
    fn imports_a_directory_with_files_and_links() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        fs::write(dir.path().join("sub/a"), b"hello").unwrap();
        fs::set_permissions(dir.path().join("sub/a"), fs::Permissions::from_mode(0o751)).unwrap();
        symlink("sub/a", dir.path().join("l")).unwrap();
        let Inode::Directory(root) = import_host_path(dir.path(), &OPTS).unwrap() else {
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
    fn a_symlink_source_copies_what_it_points_to() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("real"), b"contents").unwrap();
        fs::set_permissions(dir.path().join("real"), fs::Permissions::from_mode(0o640)).unwrap();
        symlink("real", dir.path().join("link")).unwrap();
        symlink("link", dir.path().join("link2")).unwrap();
        let inode = import_host_path(&dir.path().join("link2"), &OPTS).unwrap();
        assert_eq!(body(&inode), b"contents");
        let Inode::Leaf(l) = &inode else { panic!() };
        assert_eq!(l.meta.mode, 0o640);
        // A link to a directory copies the directory.
        fs::create_dir(dir.path().join("d")).unwrap();
        fs::write(dir.path().join("d/f"), b"in d").unwrap();
        symlink("d", dir.path().join("dl")).unwrap();
        let Inode::Directory(d) = import_host_path(&dir.path().join("dl"), &OPTS).unwrap() else {
            panic!("not a directory")
        };
        assert_eq!(body(d.get("f".as_ref()).unwrap()), b"in d");
    }

    #[test]
    fn symlink_loops_are_named() {
        let dir = tempfile::tempdir().unwrap();
        symlink("b", dir.path().join("a")).unwrap();
        symlink("a", dir.path().join("b")).unwrap();
        symlink("self", dir.path().join("self")).unwrap();
        for name in ["a", "self"] {
            let path = dir.path().join(name);
            let err = import_host_path(&path, &OPTS).unwrap_err();
            assert!(
                matches!(&err, FromHostError::SymlinkLoop { path: p } if *p == path),
                "{err}"
            );
            assert_eq!(
                err.to_string(),
                format!("{}: a loop of symbolic links", path.display())
            );
        }
    }

    #[test]
    fn fifos_devices_and_sockets_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        symlink(&fifo, dir.path().join("to-fifo")).unwrap();
        let sock = dir.path().join("sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        for (path, resolved, kind) in [
            (fifo.clone(), fifo.clone(), "FIFO"),
            (dir.path().join("to-fifo"), fifo.clone(), "FIFO"),
            ("/dev/zero".into(), "/dev/zero".into(), "character device"),
            (sock.clone(), sock.clone(), "socket"),
        ] {
            let err = import_host_path(&path, &OPTS).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "{}: a {kind}, not a regular file or directory",
                    resolved.display()
                )
            );
        }
        // Inside a directory source too (the FIFO is the directory's only special entry
        // once the socket is gone).
        drop(_listener);
        fs::remove_file(&sock).unwrap();
        let err = import_host_path(dir.path(), &OPTS).unwrap_err();
        assert!(
            matches!(&err, FromHostError::Unsupported { path, kind: "FIFO" } if *path == fifo),
            "{err}"
        );
    }

    #[test]
    fn kernel_filesystems_are_refused() {
        for path in ["/proc/self/environ", "/proc/self/status", "/proc"] {
            let err = import_host_path(Path::new(path), &OPTS).unwrap_err();
            assert!(
                matches!(err, FromHostError::KernelFilesystem { fs: "proc", .. }),
                "{path}: {err}"
            );
            assert!(err.to_string().contains(": on proc, a kernel filesystem"));
        }
        if Path::new("/sys/kernel").is_dir() {
            let err = import_host_path(Path::new("/sys/kernel"), &OPTS).unwrap_err();
            assert!(
                matches!(err, FromHostError::KernelFilesystem { fs: "sysfs", .. }),
                "{err}"
            );
        }
    }

    #[test]
    fn a_large_source_is_not_read_into_memory() {
        // A sparse 10 GiB file: importing it records an extent and reads nothing.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        fs::File::create(&path).unwrap().set_len(10 << 30).unwrap();
        let Inode::Leaf(l) = import_host_path(&path, &OPTS).unwrap() else {
            panic!("not a file")
        };
        match &l.kind {
            LeafKind::File(Content::Extent { len, offset, file }) => {
                assert_eq!((*len, *offset), (10 << 30, 0));
                assert_eq!(file.path(), fs::canonicalize(&path).unwrap());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn missing_path_names_it() {
        let err = import_host_path(Path::new("/nonexistent/x"), &OPTS).unwrap_err();
        assert!(
            crate::error::chain(&err).starts_with("/nonexistent/x: "),
            "{err}"
        );
        assert!(matches!(err, FromHostError::Io { .. }));
    }

    #[test]
    fn resolve_reports_the_target_and_its_kind() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("d")).unwrap();
        symlink("d", dir.path().join("l")).unwrap();
        let s = resolve_source(&dir.path().join("l")).unwrap();
        assert!(s.is_dir);
        assert_eq!(s.path, fs::canonicalize(dir.path().join("d")).unwrap());
    }

    #[test]
    fn a_directory_source_keeps_image_paths_within_path_max() {
        let dir = tempfile::tempdir().unwrap();
        let name = "n".repeat(200);
        fs::create_dir(dir.path().join(&name)).unwrap();
        fs::write(dir.path().join(&name).join(&name), b"x").unwrap();
        // 401 bytes inside the source: fits under a short image path...
        import_host_path_at(dir.path(), &OPTS, 10).unwrap();
        // ...not under one of 3700 bytes.
        let err = import_host_path_at(dir.path(), &OPTS, 3700).unwrap_err();
        assert!(
            matches!(err, FromHostError::PathTooLong { bytes: 4102, .. }),
            "{err}"
        );
        assert!(
            err.to_string().contains("more than the 4095 Linux allows"),
            "{err}"
        );
    }

    #[test]
    fn a_directory_inside_itself_is_refused() {
        // What a looping mount would show: the directory met again below itself.
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        let md = fs::metadata(dir.path().join("sub")).unwrap();
        let mut walk = DirWalk {
            opts: &OPTS,
            source: dir.path(),
            ancestors: vec![(md.dev(), md.ino())],
            entries: 0,
        };
        let err =
            import_dir(dir.path(), &fs::metadata(dir.path()).unwrap(), 0, &mut walk).unwrap_err();
        assert!(
            matches!(&err, FromHostError::DirectoryLoop { path } if *path == dir.path().join("sub")),
            "{err}"
        );
    }
}
