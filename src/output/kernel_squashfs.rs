//! `kernel+squashfs`: LinuxKit's kernel and root filesystem as a read-only squashfs
//! (NAME-kernel, NAME-squashfs.img), the command line with the root device
//! (NAME-squashfs-cmdline), and NAME-squashfs-initrd.img: a small initrd holding only `/init`
//! and the kernel's modules, which finds the root device, mounts the squashfs and continues
//! from it. Kernels built with their disk and squashfs drivers as modules (Debian's) cannot
//! mount the root themselves; the init does it for them. The squashfs carries the mount points
//! a read-only root needs ([`crate::rootfs::mount_points`]).

use std::io::{BufWriter, Write};

use super::{Job, OutputError, Outputs, finish};
use crate::archive::compress::Compression;
use crate::boot::initrd::{in_boot_initrd, in_initrd, write_initrd_of};
use crate::disk::squashfs::{SquashfsCompression, SquashfsOptions, write_squashfs};
use crate::tree::{Tree, TreePath};

/// What the command line gains: the root is the first virtio disk, a squashfs.
pub const ROOT_ARGS: &str = "root=/dev/vda rootfstype=squashfs";

/// The root filesystem without the boot files that travel beside it, with the mount points a
/// root that is read-only from the start needs.
fn root_tree(tree: &Tree, mtime: i64) -> Tree {
    let keep = in_initrd(tree);
    let mut root = tree.clone();
    for p in ["boot/kernel", "boot/cmdline", "boot/ucode.cpio", "boot"] {
        if let Ok(path) = TreePath::parse(p)
            && !keep(&path)
        {
            let _ = root.remove(&path);
        }
    }
    crate::rootfs::mount_points::add_mount_points(&mut root, mtime);
    root
}

/// `kernel+squashfs`.
pub(super) fn write(job: &Job<'_>, out: &mut Outputs) -> Result<(), OutputError> {
    let boot = job.boot_files()?;
    out.copy("-kernel", &boot.kernel)?;
    let cmdline = format!("{} {ROOT_ARGS}", boot.cmdline_text());
    let mut file = BufWriter::new(out.create("-squashfs-cmdline")?);
    file.write_all(cmdline.trim().as_bytes())
        .map_err(|e| OutputError::io(std::path::Path::new("-cmdline"), e))?;
    finish(file, "cmdline")?;
    let initrd = BufWriter::with_capacity(1 << 20, out.create("-squashfs-initrd.img")?);
    let initrd = write_initrd_of(
        job.tree,
        Some(&boot),
        initrd,
        &super::kernel_initrd::initrd_options(job, true),
        &in_boot_initrd,
    )?;
    finish(initrd, "initrd")?;
    let compression = match job.request.compression {
        Compression::Zstd => SquashfsCompression::Zstd,
        Compression::Gzip | Compression::None => SquashfsCompression::Gzip,
    };
    let mut image = BufWriter::with_capacity(1 << 20, out.create("-squashfs.img")?);
    write_squashfs(
        &root_tree(job.tree, job.request.mtime),
        &mut image,
        &SquashfsOptions {
            compression,
            mtime_clamp: job.request.mtime_clamp,
            mtime: job.request.mtime,
            threads: job.request.jobs,
            ..SquashfsOptions::default()
        },
    )
    .map_err(|e| OutputError::Layout {
        what: "the squashfs root".into(),
        reason: e.to_string(),
    })?;
    finish(image, "squashfs.img")?;
    Ok(())
}
