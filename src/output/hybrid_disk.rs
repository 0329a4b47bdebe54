//! The hybrid layout VM disks hold with `--boot both` (amd64), booting through BIOS and UEFI
//! alike from one GPT disk:
//!
//! ```text
//! LBA 0        protective MBR whose boot code is GRUB's boot.img
//! 1 MiB        partition 1: BIOS boot partition (1 MiB) holding GRUB's core.img
//! 2 MiB        partition 2: EFI system partition, to the last whole MiB
//!              EFI/BOOT/BOOTX64.EFI   the unified kernel image (UEFI)
//!              kernel, initrd.img, cmdline   what GRUB loads (BIOS)
//! ```
//!
//! UEFI firmware ignores the MBR's code and starts the unified kernel image from the ESP;
//! a BIOS runs boot.img, which loads core.img from partition 1, whose embedded
//! configuration loads the kernel and initrd from partition 2.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::bios_disk::{Grub, grub, grub_err, loader_files};
use super::disk_image::{RawLayout, disk_size, layout_err, mib};
use super::efi_disk::{assemble_uki, esp_size, write_esp};
use super::{Job, OutputError};
use crate::boot::grub_pc;
use crate::disk::gpt::{ESP_TYPE, OVERHEAD, Partition, usable, write_gpt};
use crate::disk::slice::Slice;
use crate::disk::{ALIGN, SECTOR};

/// GRUB's BIOS boot partition type ("Hah!IdontNeedEFI").
const BIOS_BOOT_TYPE: uuid::Uuid = uuid::uuid!("21686148-6449-6E6F-744E-656564454649");

/// GRUB modules core.img embeds: the BIOS disk driver, GPT, FAT, Linux, a serial terminal.
const MODULES: &[&str] = &[
    "biosdisk", "part_gpt", "fat", "linux", "boot", "serial", "terminal",
];

/// The hybrid layout written into `file` (empty).
pub(super) fn write_disk(
    job: &Job<'_>,
    scratch: &Path,
    file: &mut File,
) -> Result<RawLayout, OutputError> {
    let boot = job.boot_files()?;
    let arch = job.request.arch;
    let initrd = super::kernel_initrd::scratch_initrd(job, &boot, scratch, true)?;
    let uki = assemble_uki(job, &boot, &initrd, scratch)?;
    let Grub { core, boot_img, .. } = grub(
        job,
        &boot,
        "(hd0,gpt2)",
        MODULES,
        ALIGN,
        "its 1 MiB partition",
    )?;
    let loader_files = loader_files(&boot, &initrd);
    let size = disk_size(job, ALIGN + esp_size(&uki, &loader_files, arch) + OVERHEAD)?;
    let (first, last) = usable(size)
        .filter(|(first, last)| first + 2 * (ALIGN / SECTOR) <= *last)
        .ok_or_else(|| {
            OutputError::Usage(format!(
                "--size {} leaves no room for the partitions",
                mib(size)
            ))
        })?;
    let seed =
        crate::disk::ids::Seed::of(&[b"bios+uefi", &core, uki.seed.guid("hybrid").as_bytes()]);
    let bios_boot = Partition {
        type_guid: BIOS_BOOT_TYPE,
        guid: seed.guid("bios-boot-partition"),
        first_lba: first,
        last_lba: first + ALIGN / SECTOR - 1,
        name: "BIOS boot partition".into(),
        attributes: 0,
    };
    let esp = Partition {
        type_guid: ESP_TYPE,
        guid: seed.guid("esp-partition"),
        first_lba: first + ALIGN / SECTOR,
        last_lba: last,
        name: "EFI System Partition".into(),
        attributes: 0,
    };
    let what = Path::new("the disk image");
    file.set_len(size).map_err(|e| OutputError::io(what, e))?;
    write_esp(
        Slice::new(&mut *file, esp.start(), esp.len()),
        &uki,
        &loader_files,
        arch,
        job.request.mtime,
        u32::try_from(esp.first_lba).unwrap_or(u32::MAX),
    )
    .map_err(layout_err("the EFI system partition"))?;
    write_gpt(&mut *file, seed.guid("disk"), &[bios_boot.clone(), esp])
        .map_err(layout_err("the GPT"))?;

    // GRUB's boot.img goes into the protective MBR's code area; core.img, patched to load
    // itself from where it lies, into the BIOS boot partition.
    let mut mbr = [0u8; 512];
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.read_exact(&mut mbr))
        .map_err(|e| OutputError::io(what, e))?;
    let core =
        grub_pc::install(&boot_img, &core, bios_boot.first_lba, &mut mbr).map_err(grub_err)?;
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.write_all(&mbr))
        .and_then(|_| file.seek(SeekFrom::Start(bios_boot.start())))
        .and_then(|_| file.write_all(&core))
        .and_then(|_| file.flush())
        .map_err(|e| OutputError::io(what, e))?;
    Ok(RawLayout { size, seed })
}
