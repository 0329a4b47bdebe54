//! Moving the initramfs onto a tmpfs. The kernel's initial root cannot be pivoted away from,
//! so containers could not pivot_root; a copy on a tmpfs mounted over `/` can. Files are
//! deleted from the initramfs as they are copied, so memory use does not double.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use nix::mount::{MsFlags, mount};
use nix::sys::stat::{Mode, SFlag, UtimensatFlags, mknod, utimensat};
use nix::sys::statfs::{FsType, TMPFS_MAGIC, statfs};

/// ramfs, the initramfs's filesystem when the kernel does not use tmpfs for it.
const RAMFS_MAGIC: FsType = FsType(0x8584_58f6);
use nix::sys::time::TimeSpec;

/// Where the new root is built before it is moved over `/`.
const NEW_ROOT: &str = "/.osbuild-root";

/// Whether `/` is the kernel's initial ramfs/tmpfs (an initramfs boot).
pub fn is_initramfs() -> bool {
    match statfs("/") {
        Ok(s) => s.filesystem_type() == RAMFS_MAGIC || s.filesystem_type() == TMPFS_MAGIC,
        Err(_) => false,
    }
}

/// Copy `/` to a tmpfs, make that tmpfs the root and chroot into it.
pub fn move_to_tmpfs() -> Result<usize, String> {
    fs::create_dir_all(NEW_ROOT).map_err(|e| format!("mkdir {NEW_ROOT}: {e}"))?;
    mount(
        Some("rootfs"),
        NEW_ROOT,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("mode=0755"),
    )
    .map_err(|e| format!("mounting a tmpfs on {NEW_ROOT}: {e}"))?;
    let dev = fs::symlink_metadata("/")
        .map_err(|e| format!("/: {e}"))?
        .dev();
    let mut links = HashMap::new();
    let mut count = 0;
    copy_dir(
        Path::new("/"),
        Path::new(NEW_ROOT),
        dev,
        &mut links,
        &mut count,
    )?;
    std::env::set_current_dir(NEW_ROOT).map_err(|e| format!("chdir {NEW_ROOT}: {e}"))?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .map_err(|e| format!("moving the new root over /: {e}"))?;
    nix::unistd::chroot(".").map_err(|e| format!("chroot: {e}"))?;
    std::env::set_current_dir("/").map_err(|e| format!("chdir /: {e}"))?;
    Ok(count)
}

fn copy_dir(
    from: &Path,
    to: &Path,
    dev: u64,
    links: &mut HashMap<u64, std::path::PathBuf>,
    count: &mut usize,
) -> Result<(), String> {
    let err = |p: &Path, e: &dyn std::fmt::Display| format!("copying {}: {e}", p.display());
    let entries = fs::read_dir(from).map_err(|e| err(from, &e))?;
    let mut names: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    names.sort();
    for name in names {
        let src = from.join(&name);
        if src == Path::new(NEW_ROOT) {
            continue;
        }
        let dst = to.join(&name);
        let meta = fs::symlink_metadata(&src).map_err(|e| err(&src, &e))?;
        if meta.dev() != dev {
            continue; // another filesystem mounted here (none is expected this early)
        }
        let ft = meta.file_type();
        *count += 1;
        if ft.is_dir() {
            fs::create_dir(&dst).map_err(|e| err(&dst, &e))?;
            copy_dir(&src, &dst, dev, links, count)?;
            let _ = fs::remove_dir(&src);
        } else if ft.is_symlink() {
            let target = fs::read_link(&src).map_err(|e| err(&src, &e))?;
            std::os::unix::fs::symlink(target, &dst).map_err(|e| err(&dst, &e))?;
            let _ = fs::remove_file(&src);
        } else if meta.nlink() > 1 && links.contains_key(&meta.ino()) {
            fs::hard_link(&links[&meta.ino()], &dst).map_err(|e| err(&dst, &e))?;
            let _ = fs::remove_file(&src);
            continue;
        } else if ft.is_file() {
            fs::copy(&src, &dst).map_err(|e| err(&src, &e))?;
            let _ = fs::remove_file(&src);
        } else {
            let kind = match meta.mode() & 0o170000 {
                0o020000 => SFlag::S_IFCHR,
                0o060000 => SFlag::S_IFBLK,
                0o010000 => SFlag::S_IFIFO,
                _ => SFlag::S_IFSOCK,
            };
            mknod(
                &dst,
                kind,
                Mode::from_bits_truncate(meta.mode()),
                meta.rdev(),
            )
            .map_err(|e| err(&dst, &e))?;
            let _ = fs::remove_file(&src);
        }
        if meta.nlink() > 1 && !ft.is_dir() {
            links.insert(meta.ino(), dst.clone());
        }
        std::os::unix::fs::lchown(&dst, Some(meta.uid()), Some(meta.gid()))
            .map_err(|e| err(&dst, &e))?;
        if !ft.is_symlink() {
            fs::set_permissions(&dst, fs::Permissions::from_mode(meta.mode() & 0o7777))
                .map_err(|e| err(&dst, &e))?;
        }
        let t = TimeSpec::new(meta.mtime(), meta.mtime_nsec());
        let _ = utimensat(
            nix::fcntl::AT_FDCWD,
            &dst,
            &t,
            &t,
            UtimensatFlags::NoFollowSymlink,
        );
    }
    Ok(())
}
