//! `ova`: an OVF appliance in a tar, as vSphere, VirtualBox and EC2 import it. The members,
//! in the order OVF requires: `NAME.ovf` (the descriptor: one streamOptimized disk on an LSI
//! Logic SCSI controller, one NIC, UEFI unless the disk holds the BIOS layout), `NAME.mf`
//! (SHA-256 of the descriptor and the disk) and `NAME-disk1.vmdk`. The VMDK is written to a
//! scratch file first, since the descriptor states its size and the manifest its digest.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;

use sha2::Digest;

use super::formats::DiskBoot;
use super::manifest::sha256_file;
use super::{Job, OutputError, Outputs, finish};
use crate::archive::tar::{write_end, write_file};
use crate::disk::ids::Seed;
use crate::disk::vm::{RawDisk, ovf, vmdk};

/// The appliance's virtual hardware: what the examples need, changed after import as usual.
const CPUS: u32 = 1;
const MEMORY_MIB: u32 = 1024;

/// `ova`, holding `raw` (the layout `boot`).
pub(super) fn write(
    job: &Job<'_>,
    raw: &RawDisk<'_>,
    seed: &Seed,
    boot: DiskBoot,
    scratch: &Path,
    out: &mut Outputs,
) -> Result<(), OutputError> {
    let name = &job.request.name;
    let disk_name = format!("{name}-disk1.vmdk");
    let ovf_name = format!("{name}.ovf");
    let mf_name = format!("{name}.mf");
    let vmdk_path = scratch.join("disk.vmdk");
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |e| OutputError::io(&path, e)
    };

    let file = File::create(&vmdk_path).map_err(io(&vmdk_path))?;
    let mut file = BufWriter::with_capacity(1 << 20, file);
    let opts = super::vm_disk::vmdk_options(seed, &disk_name, job.request.jobs);
    let written =
        vmdk::write_stream_optimized(raw, &mut file, &opts).map_err(|e| OutputError::Layout {
            what: format!("the {} image's disk", job.format),
            reason: e.to_string(),
        })?;
    finish(file, &vmdk_path.display().to_string())?;
    let (vmdk_sha, vmdk_len) = sha256_file(&vmdk_path).map_err(io(&vmdk_path))?;

    let descriptor = ovf::descriptor(&ovf::Appliance {
        name,
        disk_file: &disk_name,
        disk_file_size: vmdk_len,
        capacity: raw.size(),
        populated_size: written.populated,
        uefi: boot != DiskBoot::Bios,
        arch: job.request.arch,
        cpus: CPUS,
        memory_mib: MEMORY_MIB,
    });
    let descriptor_sha = hex::encode(sha2::Sha256::digest(descriptor.as_bytes()));
    let manifest = ovf::manifest(&[(&ovf_name, &descriptor_sha), (&disk_name, &vmdk_sha)]);

    let suffix = job.format.files[0].suffix;
    let mut tar = BufWriter::with_capacity(1 << 20, out.create(suffix)?);
    let mtime = job.request.mtime;
    for (member, text) in [(&ovf_name, &descriptor), (&mf_name, &manifest)] {
        write_file(
            &mut tar,
            member,
            0o644,
            mtime,
            text.len() as u64,
            text.as_bytes(),
        )?;
    }
    let vmdk = BufReader::with_capacity(1 << 20, File::open(&vmdk_path).map_err(io(&vmdk_path))?);
    write_file(&mut tar, &disk_name, 0o644, mtime, vmdk_len, vmdk)?;
    write_end(&mut tar)?;
    finish(tar, suffix)?;
    Ok(())
}
