//! `raw-efi`: a GPT disk with one EFI system partition holding a unified kernel image at the
//! removable-media path (`EFI/BOOT/BOOTX64.EFI`, `BOOTAA64.EFI`). The UKI is systemd's EFI stub
//! with the kernel, initrd, command line and os-release as sections, so the firmware starts
//! the kernel with everything it needs and no boot loader or configuration is involved.

use std::fs::File;
use std::io::{BufWriter, Read};
use std::path::Path;

use super::disk_image::{RawLayout, digest, disk_size, layout_err, mib};
use super::{Job, OutputError, Outputs, finish};
use crate::boot::uki::{PeMachine, UkiSection, check_kernel, plan};
use crate::boot::{BootFiles, efi_boot_path, efi_stub_path, tree_file};
use crate::disk::fat::{FatFile, FatOptions, min_size, write_fat};
use crate::disk::gpt::{ESP_TYPE, OVERHEAD, Partition, usable, write_gpt};
use crate::disk::ids::Seed;
use crate::disk::slice::Slice;
use crate::disk::{ALIGN, DiskError, round_up};
use crate::image::Arch;
use crate::tree::{BlobFile, Content};

/// The PE machine of `arch`'s EFI applications.
fn machine(arch: Arch) -> Result<PeMachine, OutputError> {
    match arch {
        Arch::Amd64 => Ok(PeMachine::X64),
        Arch::Arm64 => Ok(PeMachine::Aa64),
        Arch::S390x => Err(OutputError::Usage("s390x has no UEFI".into())),
    }
}

/// A UKI assembled into a scratch file, ready to be copied onto a volume.
pub(super) struct Uki {
    /// The UKI's bytes.
    pub content: Content,
    /// A digest of everything in it, for identifiers derived from content.
    pub seed: Seed,
}

/// The os-release a UKI carries (`.osrel`): the build's name.
fn os_release(name: &str) -> Vec<u8> {
    let quoted = name.replace(['"', '\\', '`', '$'], "_");
    format!("NAME=\"osbuild\"\nID=osbuild\nPRETTY_NAME=\"{quoted}\"\nIMAGE_ID=\"{quoted}\"\n")
        .into_bytes()
}

/// The first bytes of `content` (a kernel's headers).
fn head(content: &Content, n: u64) -> Result<Vec<u8>, OutputError> {
    let mut out = Vec::new();
    content
        .open()
        .and_then(|r| r.take(n).read_to_end(&mut out))
        .map_err(|e| OutputError::io(Path::new("the kernel"), e))?;
    Ok(out)
}

/// Assemble the UKI of `job` into `scratch`: systemd's stub from the `boot.efi` image with
/// `.osrel`, `.cmdline`, `.linux` and `.initrd` (`initrd`, placed above the kernel, as arm64
/// needs).
pub(super) fn assemble_uki(
    job: &Job<'_>,
    boot: &BootFiles,
    initrd: &Content,
    scratch: &Path,
) -> Result<Uki, OutputError> {
    let arch = job.request.arch;
    let machine = machine(arch)?;
    let stub_path =
        efi_stub_path(arch).ok_or_else(|| OutputError::Usage(format!("{arch} has no EFI stub")))?;
    let efi = job.loaders.efi.as_ref().ok_or_else(|| {
        OutputError::Input(format!(
            "the {} format needs the boot.efi image",
            job.format
        ))
    })?;
    let stub = tree_file(efi, stub_path)
        .ok_or_else(|| {
            OutputError::Input(format!(
                "the boot.efi image has no /{stub_path} (systemd's EFI stub for {arch})"
            ))
        })?
        .read_to_vec()
        .map_err(|e| OutputError::io(Path::new(stub_path), e))?;
    check_kernel(machine, &head(&boot.kernel, 64 << 10)?)
        .map_err(|e| OutputError::Input(format!("{}: {e}", crate::boot::KERNEL)))?;
    let osrel = os_release(&job.request.name);
    let cmdline = boot.cmdline_text().into_bytes();
    let sections = [
        UkiSection {
            name: ".osrel",
            source: &osrel,
        },
        UkiSection {
            name: ".cmdline",
            source: &cmdline,
        },
        UkiSection {
            name: ".linux",
            source: &boot.kernel,
        },
        UkiSection {
            name: ".initrd",
            source: initrd,
        },
    ];
    let uki = plan(&stub, machine, &sections)
        .map_err(|e| OutputError::Input(format!("{stub_path}: {e}")))?;
    let seed = digest(&[&stub, &osrel, &cmdline, &boot.kernel, initrd])?;
    let path = scratch.join("uki.efi");
    let mut file = BufWriter::with_capacity(
        1 << 20,
        File::create(&path).map_err(|e| OutputError::io(&path, e))?,
    );
    uki.write(&mut file, &sections)
        .map_err(|e| OutputError::Layout {
            what: "the unified kernel image".into(),
            reason: e.to_string(),
        })?;
    finish(file, &path.display().to_string())?;
    Ok(Uki {
        content: Content::Extent {
            file: BlobFile::new(&path),
            offset: 0,
            len: uki.len(),
        },
        seed,
    })
}

/// Make an EFI system partition on `volume` holding `uki` at `arch`'s boot path, and `extra`
/// files (a BIOS loader's kernel and initrd) at the root.
pub(super) fn write_esp<D: std::io::Read + std::io::Write + std::io::Seek>(
    volume: D,
    uki: &Uki,
    extra: &[FatFile<'_>],
    arch: Arch,
    mtime: i64,
    hidden_sectors: u32,
) -> Result<(), DiskError> {
    let path = efi_boot_path(arch)
        .ok_or_else(|| DiskError::Unrepresentable(format!("{arch} has no UEFI")))?;
    let mut files = vec![FatFile {
        path,
        source: &uki.content,
    }];
    files.extend_from_slice(extra);
    write_fat(
        volume,
        &files,
        &FatOptions {
            volume_id: uki.seed.serial("esp-volume-id"),
            label: "ESP".into(),
            mtime,
            hidden_sectors,
        },
    )?;
    Ok(())
}

/// The size of an ESP holding `uki` and `extra`: what they need plus 5%, in whole MiB.
pub(super) fn esp_size(uki: &Uki, extra: &[FatFile<'_>], arch: Arch) -> u64 {
    let path = efi_boot_path(arch).unwrap_or("EFI/BOOT/BOOT.EFI");
    let mut files = vec![FatFile {
        path,
        source: &uki.content,
    }];
    files.extend_from_slice(extra);
    let need = min_size(&files);
    round_up(need + need / 20, ALIGN)
}

/// The layout of `raw-efi` written into `file` (empty): the GPT and the ESP holding the UKI.
pub(super) fn write_disk(
    job: &Job<'_>,
    scratch: &Path,
    file: &mut File,
) -> Result<RawLayout, OutputError> {
    let boot = job.boot_files()?;
    let arch = job.request.arch;
    let initrd = super::kernel_initrd::scratch_initrd(job, &boot, scratch, true)?;
    let uki = assemble_uki(job, &boot, &initrd, scratch)?;
    let size = disk_size(job, esp_size(&uki, &[], arch) + OVERHEAD)?;
    let (first, last) = usable(size).ok_or_else(|| {
        OutputError::Usage(format!(
            "--size {} leaves no room for a partition",
            mib(size)
        ))
    })?;
    let esp = Partition {
        type_guid: ESP_TYPE,
        guid: uki.seed.guid("esp-partition"),
        first_lba: first,
        last_lba: last,
        name: "EFI System Partition".into(),
        attributes: 0,
    };
    file.set_len(size)
        .map_err(|e| OutputError::io(Path::new("the disk image"), e))?;
    write_esp(
        Slice::new(&mut *file, esp.start(), esp.len()),
        &uki,
        &[],
        arch,
        job.request.mtime,
        u32::try_from(first).unwrap_or(u32::MAX),
    )
    .map_err(layout_err("the EFI system partition"))?;
    write_gpt(&mut *file, uki.seed.guid("disk"), &[esp]).map_err(layout_err("the GPT"))?;
    Ok(RawLayout {
        size,
        seed: uki.seed,
    })
}

/// `raw-efi`.
pub(super) fn write(job: &Job<'_>, out: &mut Outputs) -> Result<(), OutputError> {
    let scratch = job.scratch()?;
    let mut file = out.create("-efi.img")?;
    write_disk(job, scratch.path(), &mut file)?;
    Ok(())
}
