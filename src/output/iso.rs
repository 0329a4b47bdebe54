//! `iso-efi` and `iso-bios`: hybrid ISO 9660 images (Rock Ridge, Joliet) that boot from a
//! CD-ROM drive and, written to a disk or USB stick, from that disk.
//!
//! Both carry `boot/efi.img`, a FAT image holding the unified kernel image of `raw-efi` at the
//! removable-media path, as an El Torito EFI entry and as an 0xEF partition of the hybrid MBR.
//! `iso-bios` adds isolinux from the `boot.bios` image: `isolinux/isolinux.bin` as the El
//! Torito BIOS entry (4 sectors, boot info table), `isolinux/ldlinux.c32`, an
//! `isolinux/isolinux.cfg` that starts `boot/kernel` with `boot/initrd.img` (microcode first)
//! and the spec's command line, and isohdpfx.bin as the MBR code, so one image boots through
//! BIOS and UEFI, as a CD and as a disk.
//!
//! The UKI and the FAT image are made in a scratch directory beside the outputs; the ISO is
//! then written in one sequential pass, file bodies streamed from their sources.

use std::fs::OpenOptions;
use std::io::BufWriter;
use std::path::Path;

use super::efi_disk::{Uki, assemble_uki, esp_size, write_esp};
use super::kernel_initrd::scratch_initrd;
use super::{Job, OutputError, Outputs, finish};
use crate::boot::{BootFiles, tree_file};
use crate::disk::DiskError;
use crate::disk::iso9660::{
    BiosBoot, EfiBoot, ElTorito, Hybrid, IsoError, IsoFile, IsoImage, write_iso,
};
use crate::disk::source::Source;
use crate::tree::{BlobFile, Content};

/// The FAT image holding the UKI, in the ISO.
const EFI_IMAGE: &str = "boot/efi.img";
/// isolinux's boot file, in the ISO.
const ISOLINUX_BIN: &str = "isolinux/isolinux.bin";
/// The rest of isolinux, beside its boot file.
const LDLINUX_C32: &str = "isolinux/ldlinux.c32";
/// isolinux's configuration.
const ISOLINUX_CFG: &str = "isolinux/isolinux.cfg";
/// The kernel and initrd isolinux loads.
const ISO_KERNEL: &str = "boot/kernel";
const ISO_INITRD: &str = "boot/initrd.img";

/// Where the `boot.bios` image (Debian's isolinux and syslinux-common) has its loaders.
const BIOS_ISOLINUX_BIN: &str = "usr/lib/ISOLINUX/isolinux.bin";
const BIOS_MBR_CODE: &str = "usr/lib/ISOLINUX/isohdpfx.bin";
const BIOS_LDLINUX_C32: &str = "usr/lib/syslinux/modules/bios/ldlinux.c32";
/// The length of isohdpfx.bin: the MBR's boot code area.
const MBR_CODE_LEN: u64 = 432;
/// 512-byte sectors of isolinux.bin the BIOS loads; isolinux loads the rest itself.
const ISOLINUX_LOAD_SECTORS: u16 = 4;

/// The volume label of build `name`: upper-cased, every character other than `A-Z`, `0-9`
/// and `_` made `_`, at most 32; `OSBUILD` when nothing of the name is left.
pub(super) fn volume_id(name: &str) -> String {
    let id: String = name
        .chars()
        .take(32)
        .map(|c| {
            let c = c.to_ascii_uppercase();
            if c.is_ascii_uppercase() || c.is_ascii_digit() {
                c
            } else {
                '_'
            }
        })
        .collect();
    if id.bytes().any(|b| b != b'_') {
        id
    } else {
        "OSBUILD".into()
    }
}

/// A disk layout error of the EFI image as one line.
fn esp_err(e: DiskError) -> OutputError {
    OutputError::Layout {
        what: format!("the EFI boot image {EFI_IMAGE}"),
        reason: e.to_string(),
    }
}

/// An ISO writer error as one line: written to `dest`, with the cause of read and write
/// failures spelled out.
fn iso_err(dest: &Path) -> impl Fn(IsoError) -> OutputError + '_ {
    move |e| match e {
        IsoError::Write(source) => OutputError::io(dest, source),
        // isolinux-debug.bin or another loader in isolinux.bin's place.
        IsoError::NotHybridIsolinux(_) => OutputError::Input(format!(
            "the boot.bios image's /{BIOS_ISOLINUX_BIN} has no isolinux hybrid signature at byte 64: it cannot boot from a disk"
        )),
        IsoError::Read { path, source } => OutputError::Layout {
            what: dest.display().to_string(),
            reason: format!("reading {path}: {source}"),
        },
        other => OutputError::Layout {
            what: dest.display().to_string(),
            reason: other.to_string(),
        },
    }
}

/// Make the FAT image holding `uki` at the removable-media path into `scratch`, sized to
/// fit, and return it as content to copy into the ISO.
fn efi_image(job: &Job<'_>, uki: &Uki, scratch: &Path) -> Result<Content, OutputError> {
    let arch = job.request.arch;
    let size = esp_size(uki, &[], arch);
    let path = scratch.join("efi.img");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(|e| OutputError::io(&path, e))?;
    file.set_len(size).map_err(|e| OutputError::io(&path, e))?;
    // Hidden sectors 0: the image is read as a volume of its own by El Torito; firmware
    // booting the hybrid disk reads the partition through its own offset.
    write_esp(&mut file, uki, &[], arch, job.request.mtime, 0).map_err(esp_err)?;
    Ok(Content::Extent {
        file: BlobFile::new(&path),
        offset: 0,
        len: size,
    })
}

/// The file at `path` of the `boot.bios` image, or the error naming what is missing.
fn bios_file(job: &Job<'_>, path: &str, what: &str) -> Result<Content, OutputError> {
    let bios = job.loaders.bios.as_ref().ok_or_else(|| {
        OutputError::Input(format!(
            "the {} format needs the boot.bios image",
            job.format
        ))
    })?;
    tree_file(bios, path).ok_or_else(|| {
        OutputError::Input(format!(
            "the boot.bios image has no /{path} ({what}); the {} format needs it",
            job.format
        ))
    })
}

/// isolinux's configuration: no prompt, straight into the kernel with the spec's command
/// line.
fn isolinux_cfg(boot: &BootFiles) -> Vec<u8> {
    let cmdline = boot
        .cmdline_text()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let mut cfg = format!(
        "PROMPT 0\nTIMEOUT 0\nDEFAULT osbuild\n\nLABEL osbuild\n  KERNEL /{ISO_KERNEL}\n  INITRD /{ISO_INITRD}\n"
    );
    if !cmdline.is_empty() {
        cfg.push_str(&format!("  APPEND {cmdline}\n"));
    }
    cfg.into_bytes()
}

/// Write `image` as the current format's file `suffix`.
fn write_image(out: &mut Outputs, suffix: &str, image: &IsoImage<'_>) -> Result<(), OutputError> {
    let dest = out.dest(suffix);
    let mut file = BufWriter::with_capacity(1 << 20, out.create(suffix)?);
    write_iso(&mut file, image).map_err(iso_err(&dest))?;
    finish(file, &dest.display().to_string())?;
    Ok(())
}

/// A regular file of the image.
fn file<'a>(path: &str, source: &'a dyn Source) -> IsoFile<'a> {
    IsoFile {
        path: path.into(),
        source,
        mode: 0o644,
    }
}

/// `iso-efi`: `boot/efi.img` with the UKI, booted by UEFI firmware as a CD or as a disk.
pub(super) fn write_efi(job: &Job<'_>, out: &mut Outputs) -> Result<(), OutputError> {
    let boot = job.boot_files()?;
    let scratch = job.scratch()?;
    let initrd = scratch_initrd(job, &boot, scratch.path(), true)?;
    let uki = assemble_uki(job, &boot, &initrd, scratch.path())?;
    let esp = efi_image(job, &uki, scratch.path())?;
    let image = IsoImage {
        volume_id: volume_id(&job.request.name),
        mtime: job.request.mtime,
        files: vec![file(EFI_IMAGE, &esp)],
        boot: Some(ElTorito {
            bios: None,
            efi: Some(EfiBoot {
                path: EFI_IMAGE.into(),
            }),
        }),
        hybrid: Some(Hybrid {
            mbr_code: None,
            efi_partition: true,
        }),
    };
    write_image(out, "-efi.iso", &image)
}

/// `iso-bios`: isolinux with the kernel and initrd for BIOS firmware, plus everything of
/// `iso-efi`, so one image boots both ways, as a CD or as a disk.
pub(super) fn write_bios(job: &Job<'_>, out: &mut Outputs) -> Result<(), OutputError> {
    let boot = job.boot_files()?;
    // The loaders first: a missing one is found before any work.
    let isolinux = bios_file(job, BIOS_ISOLINUX_BIN, "isolinux's El Torito boot file")?;
    let ldlinux = bios_file(job, BIOS_LDLINUX_C32, "the rest of isolinux")?;
    let mbr = bios_file(job, BIOS_MBR_CODE, "the hybrid MBR code")?;
    if mbr.len() != MBR_CODE_LEN {
        return Err(OutputError::Input(format!(
            "the boot.bios image's /{BIOS_MBR_CODE} is {} bytes, not the {MBR_CODE_LEN} of isolinux's MBR code",
            mbr.len()
        )));
    }
    let mbr_code = mbr
        .read_to_vec()
        .map_err(|e| OutputError::io(Path::new(BIOS_MBR_CODE), e))?;
    let scratch = job.scratch()?;
    // One initrd: inside the UKI for UEFI, beside the kernel for isolinux.
    let initrd = scratch_initrd(job, &boot, scratch.path(), true)?;
    let uki = assemble_uki(job, &boot, &initrd, scratch.path())?;
    let esp = efi_image(job, &uki, scratch.path())?;
    let cfg = isolinux_cfg(&boot);
    let image = IsoImage {
        volume_id: volume_id(&job.request.name),
        mtime: job.request.mtime,
        files: vec![
            file(EFI_IMAGE, &esp),
            file(ISO_INITRD, &initrd),
            file(ISO_KERNEL, &boot.kernel),
            file(ISOLINUX_BIN, &isolinux),
            file(ISOLINUX_CFG, &cfg),
            file(LDLINUX_C32, &ldlinux),
        ],
        boot: Some(ElTorito {
            bios: Some(BiosBoot {
                path: ISOLINUX_BIN.into(),
                load_sectors: ISOLINUX_LOAD_SECTORS,
                boot_info_table: true,
            }),
            efi: Some(EfiBoot {
                path: EFI_IMAGE.into(),
            }),
        }),
        hybrid: Some(Hybrid {
            mbr_code: Some(mbr_code),
            efi_partition: true,
        }),
    };
    write_image(out, ".iso", &image)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_ids_are_d_characters() {
        assert_eq!(volume_id("redis-os"), "REDIS_OS");
        assert_eq!(volume_id("Hello_2"), "HELLO_2");
        assert_eq!(volume_id("---"), "OSBUILD");
        assert_eq!(volume_id(""), "OSBUILD");
        assert_eq!(volume_id("é1"), "_1");
        assert_eq!(volume_id(&"a".repeat(40)), "A".repeat(32));
    }

    #[test]
    fn isolinux_starts_the_kernel_without_a_prompt() {
        let boot = BootFiles {
            kernel: Content::inline(b"k".to_vec()),
            cmdline: Content::inline(b" console=ttyS0\n  quiet \n".to_vec()),
            ucode: None,
        };
        let cfg = String::from_utf8(isolinux_cfg(&boot)).unwrap();
        assert_eq!(
            cfg,
            "PROMPT 0\nTIMEOUT 0\nDEFAULT osbuild\n\nLABEL osbuild\n  KERNEL /boot/kernel\n  INITRD /boot/initrd.img\n  APPEND console=ttyS0 quiet\n"
        );
        let none = BootFiles {
            cmdline: Content::inline(Vec::new()),
            ..boot
        };
        assert!(
            !String::from_utf8(isolinux_cfg(&none))
                .unwrap()
                .contains("APPEND")
        );
    }
}
