//! The VM disk formats: a raw disk in the layout `--boot` asks for (raw-efi's, raw-bios's, or
//! the hybrid of both) written into a sparse scratch file, then wrapped in the format's
//! container by one streaming pass over its data ([`crate::disk::vm`]). `aws` is the raw
//! disk itself, written straight into place.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use super::disk_image::RawLayout;
use super::formats::{Container, DiskBoot};
use super::{Job, OutputError, Outputs, finish};
use crate::disk::DiskError;
use crate::disk::vm::{RawDisk, qcow2, vhd, vhdx, vmdk};

/// Write the raw disk of `job`'s layout into `file`.
fn write_layout(
    job: &Job<'_>,
    boot: DiskBoot,
    scratch: &Path,
    file: &mut File,
) -> Result<RawLayout, OutputError> {
    match boot {
        DiskBoot::Efi => super::efi_disk::write_disk(job, scratch, file),
        DiskBoot::Bios => super::bios_disk::write_disk(job, scratch, file),
        DiskBoot::Both => super::hybrid_disk::write_disk(job, scratch, file),
    }
}

/// A container writer's failure, said of the format.
fn container_err<'a>(job: &'a Job<'_>) -> impl Fn(DiskError) -> OutputError + 'a {
    move |e| OutputError::Layout {
        what: format!("the {} image", job.format),
        reason: e.to_string(),
    }
}

/// Every VM disk format.
pub(super) fn write(job: &Job<'_>, out: &mut Outputs) -> Result<(), OutputError> {
    let vm = job
        .format
        .vm
        .ok_or_else(|| OutputError::Usage(format!("the {} format is not a VM disk", job.format)))?;
    let boot = job
        .format
        .disk_boot(job.request.arch, job.request.boot)
        .map_err(OutputError::Usage)?
        .ok_or_else(|| OutputError::Usage(format!("{} has no disk layout", job.format)))?;
    let suffix = job.format.files[0].suffix;
    let scratch = job.scratch()?;
    if vm.container == Container::Raw {
        let mut file = out.create(suffix)?;
        write_layout(job, boot, scratch.path(), &mut file)?;
        return Ok(());
    }
    let raw_path = scratch.path().join("disk.raw");
    let mut raw_file = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&raw_path)
        .map_err(|e| OutputError::io(&raw_path, e))?;
    let layout = write_layout(job, boot, scratch.path(), &mut raw_file)?;
    let raw = RawDisk::new(&raw_file, layout.size);
    let seed = layout.seed;
    let err = container_err(job);
    let mtime = job.request.mtime;
    match vm.container {
        Container::Raw => {}
        Container::Qcow2 => {
            let opts = qcow2::Qcow2Options {
                compress: job.request.compress_clusters,
                threads: job.request.jobs,
            };
            qcow2::write(&raw, &mut out.create(suffix)?, &opts).map_err(err)?;
        }
        Container::VhdFixed => {
            vhd::write_fixed(&raw, &mut out.create(suffix)?, seed.guid("vhd"), mtime)
                .map_err(err)?;
        }
        Container::VhdDynamic => {
            vhd::write_dynamic(&raw, &mut out.create(suffix)?, seed.guid("vhd"), mtime)
                .map_err(err)?;
        }
        Container::Vhdx => {
            let ids = vhdx::VhdxIds {
                file_write: seed.guid("vhdx-file-write"),
                data_write: seed.guid("vhdx-data-write"),
                disk: seed.guid("vhdx-disk"),
            };
            vhdx::write(&raw, &mut out.create(suffix)?, &ids).map_err(err)?;
        }
        Container::Vmdk => {
            let mut file = BufWriter::with_capacity(1 << 20, out.create(suffix)?);
            let name = format!("{}{suffix}", job.request.name);
            vmdk::write_stream_optimized(
                &raw,
                &mut file,
                &vmdk_options(&seed, &name, job.request.jobs),
            )
            .map_err(err)?;
            finish(file, suffix)?;
        }
        Container::Ova => super::ova::write(job, &raw, &seed, boot, scratch.path(), out)?,
        Container::GceTarGz => {
            let file = BufWriter::with_capacity(1 << 20, out.create(suffix)?);
            let mut gz =
                crate::archive::pgzip::ParallelGzip::with_threads(file, 6, job.request.jobs);
            crate::archive::sparse_tar::write_sparse_disk(&mut gz, "disk.raw", &raw, mtime)?;
            let file = gz
                .finish()
                .map_err(|e| OutputError::io(Path::new(suffix), e))?;
            finish(file, suffix)?;
        }
    }
    Ok(())
}

/// The VMDK descriptor's identifiers, from the disk's content, and the extent's file name.
pub(super) fn vmdk_options(
    seed: &crate::disk::ids::Seed,
    file_name: &str,
    threads: usize,
) -> vmdk::VmdkOptions {
    vmdk::VmdkOptions {
        cid: seed.serial("vmdk-cid"),
        uuid: seed.guid("vmdk"),
        adapter: vmdk::Adapter::Lsilogic,
        file_name: file_name.to_string(),
        threads,
    }
}
