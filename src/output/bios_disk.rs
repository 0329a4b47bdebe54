//! `raw-bios`: an MBR disk for PC BIOS firmware. Partition 1 (active, from 1 MiB to the end)
//! is a FAT volume holding `kernel`, `initrd.img` (microcode first) and `cmdline`; GRUB is
//! the loader, installed by osbuild itself from Debian's `grub-pc-bin` files in the
//! `boot.bios` image ([`crate::boot::grub_pc`]): `boot.img` as the MBR's code and `core.img`
//! in the gap before the partition, with an embedded configuration that loads the kernel and
//! initrd from the partition with the spec's command line and boots, no `grub.cfg` involved.
//! The disk signature and volume serial are derived from the content.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use super::disk_image::{RawLayout, digest, disk_size, layout_err, mib};
use super::{Job, OutputError, Outputs};
use crate::boot::grub_pc::{self, CoreSpec, GrubError};
use crate::boot::{BootFiles, tree_file};
use crate::disk::fat::{FatFile, FatOptions, min_size, write_fat};
use crate::disk::mbr::{DISK, MbrPartition, fat_type, write_table};
use crate::disk::slice::Slice;
use crate::disk::{ALIGN, SECTOR, round_up};
use crate::tree::Content;

/// The files on the partition GRUB reads.
pub(super) const KERNEL: &str = "kernel";
pub(super) const INITRD: &str = "initrd.img";
pub(super) const CMDLINE: &str = "cmdline";

/// GRUB modules core.img embeds (their dependencies come from moddep.lst): reading the
/// disk through the BIOS, the MBR table and FAT, loading Linux, booting, and a serial
/// terminal so GRUB's messages reach serial consoles too.
const MODULES: &[&str] = &[
    "biosdisk",
    "part_msdos",
    "fat",
    "linux",
    "boot",
    "serial",
    "terminal",
];

/// A word of the command line quoted for GRUB's parser.
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The configuration embedded in core.img: serial and screen output, the partition `root`
/// (`(hd0,msdos1)`) as root, the kernel with the spec's command line, the initrd, boot.
pub(super) fn grub_config(boot: &BootFiles, root: &str) -> String {
    let args: Vec<String> = boot.cmdline_text().split_whitespace().map(quote).collect();
    let mut cfg = String::from("serial --unit=0 --speed=115200\nterminal_output console serial\n");
    cfg.push_str(&format!("set root={root}\n"));
    cfg.push_str(&format!("linux /{KERNEL}"));
    for a in &args {
        cfg.push(' ');
        cfg.push_str(a);
    }
    cfg.push_str(&format!("\ninitrd /{INITRD}\nboot\n"));
    cfg
}

/// GRUB's i386-pc file `name` from the `boot.bios` image.
pub(super) fn grub_file(job: &Job<'_>, name: &str) -> Result<Vec<u8>, GrubError> {
    let bios = job.loaders.bios.as_ref().ok_or_else(|| {
        GrubError::Missing(format!(
            "the {} format needs the boot.bios image",
            job.format
        ))
    })?;
    let path = format!("{}/{name}", grub_pc::DIR);
    let content = tree_file(bios, &path).ok_or_else(|| {
        GrubError::Missing(format!(
            "the boot.bios image has no /{path} (GRUB for BIOS from grub-pc-bin); the {} format needs it",
            job.format
        ))
    })?;
    content
        .read_to_vec()
        .map_err(|e| GrubError::Missing(format!("reading /{path} of the boot.bios image: {e}")))
}

pub(super) fn grub_err(e: GrubError) -> OutputError {
    match e {
        GrubError::Missing(m) => OutputError::Input(m),
        other => OutputError::Input(format!("GRUB for BIOS (boot.bios image): {other}")),
    }
}

/// `raw-bios`.
pub(super) fn write(job: &Job<'_>, out: &mut Outputs) -> Result<(), OutputError> {
    let scratch = job.scratch()?;
    let mut file = out.create("-bios.img")?;
    write_disk(job, scratch.path(), &mut file)?;
    Ok(())
}

/// GRUB for BIOS ready to install: core.img (its embedded configuration boots the kernel and
/// initrd from the partition `root`), boot.img, and that configuration.
pub(super) struct Grub {
    /// core.img, at most the room given to it.
    pub core: Vec<u8>,
    /// boot.img, the MBR code.
    pub boot_img: Vec<u8>,
    /// The configuration core.img runs.
    pub config: String,
}

/// Assemble GRUB for `root` (`(hd0,msdos1)`) with `modules`, refusing a core.img larger
/// than `room` (described as `room_name`).
pub(super) fn grub(
    job: &Job<'_>,
    boot: &BootFiles,
    root: &str,
    modules: &[&str],
    room: u64,
    room_name: &str,
) -> Result<Grub, OutputError> {
    let config = grub_config(boot, root);
    let core = grub_pc::core_image(
        &mut |name| grub_file(job, name),
        &CoreSpec {
            modules,
            prefix: &format!("{root}/boot/grub"),
            config: &config,
        },
    )
    .map_err(grub_err)?;
    let boot_img = grub_file(job, "boot.img").map_err(grub_err)?;
    if core.bytes.len() as u64 > room {
        return Err(OutputError::Input(format!(
            "GRUB's core image is {} bytes: more than {room_name}",
            core.bytes.len()
        )));
    }
    Ok(Grub {
        core: core.bytes,
        boot_img,
        config,
    })
}

/// The files GRUB's configuration loads from its partition.
pub(super) fn loader_files<'a>(boot: &'a BootFiles, initrd: &'a Content) -> [FatFile<'a>; 3] {
    [
        FatFile {
            path: KERNEL,
            source: &boot.kernel,
        },
        FatFile {
            path: INITRD,
            source: initrd,
        },
        FatFile {
            path: CMDLINE,
            source: &boot.cmdline,
        },
    ]
}

/// The layout of `raw-bios` written into `file` (empty): the MBR with GRUB's boot.img,
/// core.img in the gap before the partition, and the FAT partition.
pub(super) fn write_disk(
    job: &Job<'_>,
    scratch: &Path,
    file: &mut File,
) -> Result<RawLayout, OutputError> {
    let boot = job.boot_files()?;
    let initrd = super::kernel_initrd::scratch_initrd(job, &boot, scratch, true)?;
    // core.img lives in sectors 1 .. 2047, before the partition.
    let Grub {
        core,
        boot_img,
        config,
    } = grub(
        job,
        &boot,
        "(hd0,msdos1)",
        MODULES,
        ALIGN - SECTOR,
        "the sectors before the partition",
    )?;
    let files = loader_files(&boot, &initrd);
    let need = min_size(&files);
    let size = disk_size(job, ALIGN + round_up(need + need / 20, ALIGN))?;
    let sectors = u32::try_from((size - ALIGN) / SECTOR).map_err(|_| {
        OutputError::Usage(format!(
            "--size {} is too big for raw-bios: an MBR partition ends within 2T",
            mib(size)
        ))
    })?;
    let cmdline = config.clone().into_bytes();
    let seed = digest(&[&core, &boot.kernel, &initrd, &cmdline])?;

    let dest = Path::new("the disk image");
    file.set_len(size).map_err(|e| OutputError::io(dest, e))?;
    let first_lba = (ALIGN / SECTOR) as u32;
    let written = write_fat(
        Slice::new(&mut *file, ALIGN, size - ALIGN),
        &files,
        &FatOptions {
            volume_id: seed.serial("fat-volume-id"),
            label: "OSBUILD".into(),
            mtime: job.request.mtime,
            hidden_sectors: first_lba,
        },
    )
    .map_err(layout_err("the FAT partition"))?;

    let mut mbr = [0u8; 512];
    write_table(
        &mut mbr,
        seed.serial("mbr-disk-signature"),
        &[MbrPartition {
            active: true,
            kind: fat_type(written.geometry.kind),
            first_lba,
            sectors,
        }],
        DISK,
    );
    let core = grub_pc::install(&boot_img, &core, 1, &mut mbr).map_err(grub_err)?;
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.write_all(&mbr))
        .and_then(|_| file.write_all(&core))
        .and_then(|_| file.flush())
        .map_err(|e| OutputError::io(dest, e))?;
    Ok(RawLayout { size, seed })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Content;

    #[test]
    fn config_quotes_the_command_line() {
        let boot = BootFiles {
            kernel: Content::inline(Vec::new()),
            cmdline: Content::inline(b"console=ttyS0  quiet x='a b'\n".to_vec()),
            ucode: None,
        };
        let cfg = grub_config(&boot, "(hd0,msdos1)");
        assert!(
            cfg.contains("\nlinux /kernel 'console=ttyS0' 'quiet' 'x='\\''a' 'b'\\'''\n"),
            "{cfg}"
        );
        assert!(cfg.ends_with("initrd /initrd.img\nboot\n"), "{cfg}");
        assert!(cfg.contains("set root=(hd0,msdos1)\n"), "{cfg}");
    }
}
