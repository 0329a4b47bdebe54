//! The initrd: the microcode cpio as it is, then a compressed newc cpio of the root filesystem
//! without the boot files that travel beside it.

use std::io::Write;

use super::{BootFiles, CMDLINE, KERNEL, UCODE};
use crate::archive::compress::{Compression, Compressor};
use crate::archive::cpio::{CpioOptions, write_cpio};
use crate::archive::{ArchiveError, copy_content};
use crate::tree::{Tree, TreePath};

/// Whether `path` stays in the initrd: everything but the split-out boot files (and `boot/`
/// itself when nothing else is in it).
pub fn in_initrd(tree: &Tree) -> impl Fn(&TreePath) -> bool + '_ {
    let split: Vec<TreePath> = [KERNEL, CMDLINE, UCODE]
        .iter()
        .filter_map(|p| TreePath::parse(p).ok())
        .collect();
    let boot = TreePath::parse("boot").unwrap_or_default();
    let boot_only_split = tree.get_dir(&boot).is_some_and(|d| {
        d.entries
            .keys()
            .all(|n| ["kernel", "cmdline", "ucode.cpio"].iter().any(|s| n == *s))
    });
    move |p: &TreePath| !(split.contains(p) || (boot_only_split && *p == boot))
}

/// How an initrd is written.
#[derive(Debug, Clone, Copy)]
pub struct InitrdOptions {
    /// Compression of the root filesystem's cpio.
    pub compression: Compression,
    /// Later mtimes become this one (`SOURCE_DATE_EPOCH`).
    pub mtime_clamp: Option<i64>,
    /// Put the microcode cpio first (kernel+initrd, UKIs); tar-kernel-initrd carries it beside.
    pub with_ucode: bool,
    /// Compressing threads (at least one); the bytes do not depend on it.
    pub threads: usize,
}

/// Write the initrd of `tree` into `out`; returns `out` once everything is flushed into it.
pub fn write_initrd<W: Write + Send + 'static>(
    tree: &Tree,
    boot: Option<&BootFiles>,
    out: W,
    opts: &InitrdOptions,
) -> Result<W, ArchiveError> {
    write_initrd_of(tree, boot, out, opts, &in_initrd(tree))
}

/// Whether `path` belongs to a boot initrd that only finds and mounts the real root: `/init`
/// and the kernel's modules (`lib/modules/**`), with their parent directories.
pub fn in_boot_initrd(path: &TreePath) -> bool {
    let text = path.to_string();
    let text = text.trim_start_matches('/');
    text == "init" || text == "lib" || text == "lib/modules" || text.starts_with("lib/modules/")
}

/// Write an initrd of the entries of `tree` that `keep` keeps.
pub fn write_initrd_of<W: Write + Send + 'static>(
    tree: &Tree,
    boot: Option<&BootFiles>,
    out: W,
    opts: &InitrdOptions,
    keep: &dyn Fn(&TreePath) -> bool,
) -> Result<W, ArchiveError> {
    let err = |source| ArchiveError::Write {
        path: "initrd".into(),
        source,
    };
    let mut out = out;
    if opts.with_ucode
        && let Some(ucode) = boot.and_then(|b| b.ucode.as_ref())
    {
        let mut buf = vec![0u8; 1 << 16];
        copy_content(ucode, &mut out, &mut buf, UCODE)?;
    }
    let mut compressor =
        Compressor::with_threads(opts.compression, out, opts.threads).map_err(err)?;
    let cpio = CpioOptions {
        mtime_clamp: opts.mtime_clamp,
        filter: Some(keep),
    };
    write_cpio(tree, &mut compressor, &cpio)?;
    compressor.finish().map_err(err)
}
