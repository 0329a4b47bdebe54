//! The formats that carry the kernel and initrd as files: `kernel+initrd` (NAME-kernel,
//! NAME-initrd.img with the microcode first, NAME-cmdline) and `tar-kernel-initrd`
//! (NAME-initrd.tar holding kernel, initrd.img, cmdline and ucode.cpio).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use super::{Job, OutputError, Outputs, finish};
use crate::archive::tar::{TarOptions, write_tar};
use crate::boot::BootFiles;
use crate::boot::initrd::{InitrdOptions, write_initrd};
use crate::tree::{BlobFile, Content, Inode, Leaf, LeafKind, Meta, Tree, TreePath};

/// The initrd options of `job` (microcode first when `with_ucode`).
pub(super) fn initrd_options(job: &Job<'_>, with_ucode: bool) -> InitrdOptions {
    InitrdOptions {
        compression: job.request.compression,
        mtime_clamp: job.request.mtime_clamp,
        with_ucode,
        threads: job.request.jobs,
    }
}

/// Write the initrd into a file in `scratch` and return it as content to copy elsewhere.
pub(super) fn scratch_initrd(
    job: &Job<'_>,
    boot: &BootFiles,
    scratch: &Path,
    with_ucode: bool,
) -> Result<Content, OutputError> {
    let path = scratch.join("initrd.img");
    let file = File::create(&path).map_err(|e| OutputError::io(&path, e))?;
    let file = write_initrd(
        job.tree,
        Some(boot),
        BufWriter::with_capacity(1 << 20, file),
        &initrd_options(job, with_ucode),
    )?;
    let file = finish(file, &path.display().to_string())?;
    let len = file
        .metadata()
        .map_err(|e| OutputError::io(&path, e))?
        .len();
    Ok(Content::Extent {
        file: BlobFile::new(&path),
        offset: 0,
        len,
    })
}

/// `kernel+initrd`.
pub(super) fn write(job: &Job<'_>, out: &mut Outputs) -> Result<(), OutputError> {
    let boot = job.boot_files()?;
    out.copy("-kernel", &boot.kernel)?;
    out.copy("-cmdline", &boot.cmdline)?;
    let file = BufWriter::with_capacity(1 << 20, out.create("-initrd.img")?);
    let file = write_initrd(job.tree, Some(&boot), file, &initrd_options(job, true))?;
    finish(file, "initrd")?;
    Ok(())
}

/// `tar-kernel-initrd` into the output directory.
pub(super) fn write_tar_file(job: &Job<'_>, out: &mut Outputs) -> Result<(), OutputError> {
    let scratch = job.scratch()?;
    let small = kernel_initrd_tree(job, scratch.path())?;
    let mut file = BufWriter::with_capacity(1 << 20, out.create("-initrd.tar")?);
    write_tar(&small, &mut file, &TarOptions::default())?;
    finish(file, "initrd.tar")?;
    Ok(())
}

/// `tar-kernel-initrd` to standard output.
pub(super) fn stream_tar(job: &Job<'_>, mut out: &mut dyn Write) -> Result<(), OutputError> {
    let scratch = tempfile::tempdir().map_err(|e| OutputError::io(&std::env::temp_dir(), e))?;
    let small = kernel_initrd_tree(job, scratch.path())?;
    write_tar(&small, &mut out, &TarOptions::default())?;
    Ok(())
}

/// The small tree of the tar-kernel-initrd format; the initrd is written to `scratch` first.
/// The microcode travels beside the initrd in this format, not inside it.
fn kernel_initrd_tree(job: &Job<'_>, scratch: &Path) -> Result<Tree, OutputError> {
    let boot = job.boot_files()?;
    let initrd = scratch_initrd(job, &boot, scratch, false)?;
    let mtime = job.request.mtime;
    let mut out = Tree::new(mtime);
    let meta = Meta::root(0o644, mtime);
    let mut add = |name: &str, content: Content| {
        let leaf = Inode::Leaf(Arc::new(Leaf {
            meta: meta.clone(),
            kind: LeafKind::File(content),
        }));
        if let Ok(p) = TreePath::parse(name) {
            let _ = out.insert(&p, leaf, &meta);
        }
    };
    add("kernel", boot.kernel);
    add("initrd.img", initrd);
    add("cmdline", boot.cmdline);
    if let Some(ucode) = boot.ucode {
        add("ucode.cpio", ucode);
    }
    Ok(out)
}
