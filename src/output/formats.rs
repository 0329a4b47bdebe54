//! The output formats, declared once as data. Each entry says what a format is called, which
//! architectures it exists for, which files it writes, what it needs beyond the root
//! filesystem, how `osbuild run qemu` boots it and which writer makes it. The command line,
//! its help, the manifest and `run qemu` all read this table; a new format is one entry here
//! and one writer.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{Job, OutputError, Outputs};
use crate::image::Arch;

/// What a file of a format holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// A kernel image for `-kernel`.
    Kernel,
    /// An initrd for `-initrd`.
    Initrd,
    /// The kernel command line (text).
    Cmdline,
    /// A tar archive.
    Tar,
    /// A whole disk image (partition table and partitions).
    Disk,
    /// An ISO 9660 image (hybrid: also a disk image).
    Iso,
    /// A squashfs root filesystem image.
    Squashfs,
}

/// One file a format writes: the build's name followed by `suffix`.
#[derive(Debug, Clone, Copy)]
pub struct OutputFile {
    /// Appended to the build's name (`-efi.img` makes `NAME-efi.img`).
    pub suffix: &'static str,
    /// What it holds.
    pub role: Role,
}

/// Firmware a disk or ISO boots through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Firmware {
    /// UEFI (OVMF on x86_64, AAVMF on arm64).
    Uefi,
    /// A PC BIOS (SeaBIOS).
    Bios,
}

/// How a format boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", content = "firmware", rename_all = "kebab-case")]
pub enum Boot {
    /// The machine loads the kernel and initrd directly (`-kernel`, `-initrd`, `-append`).
    Direct,
    /// The machine loads the kernel directly; the root filesystem is the first disk.
    KernelRootDisk,
    /// Firmware boots the disk image.
    Disk(Firmware),
    /// Firmware boots the image as a CD-ROM (hybrid images also boot as a disk).
    Cdrom(Firmware),
    /// Not bootable by itself (a root filesystem archive).
    None,
}

/// What a format needs beyond the root filesystem.
#[derive(Debug, Clone, Copy, Default)]
pub struct Needs {
    /// The spec's kernel.
    pub kernel: bool,
    /// systemd's EFI stub (the `boot.efi` image).
    pub efi_stub: bool,
    /// syslinux's BIOS loaders (the `boot.bios` image).
    pub bios_loader: bool,
}

/// A writer: makes the format's files from the job into `out`.
pub type Writer = fn(&Job<'_>, &mut Outputs) -> Result<(), OutputError>;

/// A writer of the format's single file to a stream (standard output).
pub type StreamWriter = fn(&Job<'_>, &mut dyn std::io::Write) -> Result<(), OutputError>;

/// One output format.
#[derive(Debug)]
pub struct FormatInfo {
    /// Its name on the command line and in `outputs:`.
    pub name: &'static str,
    /// One line for the help text and the docs.
    pub summary: &'static str,
    /// The architectures it exists for.
    pub arches: &'static [Arch],
    /// The files it writes.
    pub files: &'static [OutputFile],
    /// What it needs beyond the root filesystem.
    pub needs: Needs,
    /// How it boots.
    pub boot: Boot,
    /// Its writer.
    pub writer: Writer,
    /// Its writer to standard output, for single-file formats that can stream.
    pub stream: Option<StreamWriter>,
}

const ALL: &[Arch] = &[Arch::Amd64, Arch::Arm64, Arch::S390x];
const EFI_ARCHES: &[Arch] = &[Arch::Amd64, Arch::Arm64];

/// Every format, in the order the help lists them.
pub static FORMATS: &[FormatInfo] = &[
    FormatInfo {
        name: "kernel+initrd",
        summary: "NAME-kernel, NAME-initrd.img (microcode first) and NAME-cmdline, booted directly",
        arches: ALL,
        files: &[
            OutputFile {
                suffix: "-kernel",
                role: Role::Kernel,
            },
            OutputFile {
                suffix: "-initrd.img",
                role: Role::Initrd,
            },
            OutputFile {
                suffix: "-cmdline",
                role: Role::Cmdline,
            },
        ],
        needs: Needs {
            kernel: true,
            efi_stub: false,
            bios_loader: false,
        },
        boot: Boot::Direct,
        writer: super::kernel_initrd::write,
        stream: None,
    },
    FormatInfo {
        name: "tar-kernel-initrd",
        summary: "NAME-initrd.tar holding kernel, initrd.img, cmdline and ucode.cpio",
        arches: ALL,
        files: &[OutputFile {
            suffix: "-initrd.tar",
            role: Role::Tar,
        }],
        needs: Needs {
            kernel: true,
            efi_stub: false,
            bios_loader: false,
        },
        boot: Boot::None,
        writer: super::kernel_initrd::write_tar_file,
        stream: Some(super::kernel_initrd::stream_tar),
    },
    FormatInfo {
        name: "tar",
        summary: "NAME.tar, the whole root filesystem (boot/ included)",
        arches: ALL,
        files: &[OutputFile {
            suffix: ".tar",
            role: Role::Tar,
        }],
        needs: Needs {
            kernel: false,
            efi_stub: false,
            bios_loader: false,
        },
        boot: Boot::None,
        writer: super::rootfs_tar::write,
        stream: Some(super::rootfs_tar::stream),
    },
    FormatInfo {
        name: "kernel+squashfs",
        summary: "NAME-kernel, NAME-squashfs.img (the root, read-only), NAME-squashfs-initrd.img (init and modules to mount it) and NAME-squashfs-cmdline",
        arches: ALL,
        files: &[
            OutputFile {
                suffix: "-kernel",
                role: Role::Kernel,
            },
            OutputFile {
                suffix: "-squashfs-initrd.img",
                role: Role::Initrd,
            },
            OutputFile {
                suffix: "-squashfs-cmdline",
                role: Role::Cmdline,
            },
            OutputFile {
                suffix: "-squashfs.img",
                role: Role::Squashfs,
            },
        ],
        needs: Needs {
            kernel: true,
            efi_stub: false,
            bios_loader: false,
        },
        boot: Boot::KernelRootDisk,
        writer: super::kernel_squashfs::write,
        stream: None,
    },
    FormatInfo {
        name: "raw-efi",
        summary: "NAME-efi.img: a GPT disk with an EFI system partition holding a unified kernel image",
        arches: EFI_ARCHES,
        files: &[OutputFile {
            suffix: "-efi.img",
            role: Role::Disk,
        }],
        needs: Needs {
            kernel: true,
            efi_stub: true,
            bios_loader: false,
        },
        boot: Boot::Disk(Firmware::Uefi),
        writer: super::efi_disk::write,
        stream: None,
    },
    FormatInfo {
        name: "raw-bios",
        summary: "NAME-bios.img: an MBR disk with GRUB for BIOS and a FAT partition holding the kernel, initrd and command line",
        arches: &[Arch::Amd64],
        files: &[OutputFile {
            suffix: "-bios.img",
            role: Role::Disk,
        }],
        needs: Needs {
            kernel: true,
            efi_stub: false,
            bios_loader: true,
        },
        boot: Boot::Disk(Firmware::Bios),
        writer: super::bios_disk::write,
        stream: None,
    },
    FormatInfo {
        name: "iso-efi",
        summary: "NAME-efi.iso: a hybrid ISO whose EFI boot image holds a unified kernel image (CD or disk)",
        arches: EFI_ARCHES,
        files: &[OutputFile {
            suffix: "-efi.iso",
            role: Role::Iso,
        }],
        needs: Needs {
            kernel: true,
            efi_stub: true,
            bios_loader: false,
        },
        boot: Boot::Cdrom(Firmware::Uefi),
        writer: super::iso::write_efi,
        stream: None,
    },
    FormatInfo {
        name: "iso-bios",
        summary: "NAME.iso: a hybrid ISO booting isolinux (BIOS) and a unified kernel image (UEFI), as CD or disk",
        arches: &[Arch::Amd64],
        files: &[OutputFile {
            suffix: ".iso",
            role: Role::Iso,
        }],
        needs: Needs {
            kernel: true,
            efi_stub: true,
            bios_loader: true,
        },
        boot: Boot::Cdrom(Firmware::Bios),
        writer: super::iso::write_bios,
        stream: None,
    },
];

/// A format of the table.
#[derive(Clone, Copy)]
pub struct Format(&'static FormatInfo);

impl Format {
    /// The format called `name`.
    pub fn named(name: &str) -> Option<Format> {
        FORMATS.iter().find(|f| f.name == name).map(Format)
    }

    /// Every format, in table order.
    pub fn all() -> impl Iterator<Item = Format> {
        FORMATS.iter().map(Format)
    }

    /// The names of every format, for messages: `kernel+initrd, tar-kernel-initrd, ...`.
    pub fn names() -> String {
        FORMATS
            .iter()
            .map(|f| f.name)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The table entry.
    pub fn info(self) -> &'static FormatInfo {
        self.0
    }

    /// Refuse the format for `arch` when it does not exist there.
    pub fn check_arch(self, arch: Arch) -> Result<(), String> {
        if self.0.arches.contains(&arch) {
            Ok(())
        } else {
            let arches: Vec<String> = self.0.arches.iter().map(|a| a.to_string()).collect();
            Err(format!(
                "the {} format is not made for {arch}: it exists for {}",
                self.0.name,
                arches.join(", ")
            ))
        }
    }
}

impl std::ops::Deref for Format {
    type Target = FormatInfo;
    fn deref(&self) -> &FormatInfo {
        self.0
    }
}

impl PartialEq for Format {
    fn eq(&self, other: &Format) -> bool {
        self.0.name == other.0.name
    }
}

impl Eq for Format {}

impl fmt::Debug for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Format({})", self.0.name)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.name)
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::named(s).ok_or_else(|| {
            format!(
                "unknown output format {s:?}: use one of {}",
                Format::names()
            )
        })
    }
}

/// The help text listing every format with its architectures and summary.
pub fn help() -> String {
    let mut text = String::from(
        "Output formats (repeatable; default: the spec's `outputs:`, else kernel+initrd):\n",
    );
    for f in FORMATS {
        let arches: Vec<String> = f.arches.iter().map(|a| a.to_string()).collect();
        text.push_str(&format!(
            "  {:<18} [{}] {}\n",
            f.name,
            arches.join(","),
            f.summary
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_parse_back() {
        for f in Format::all() {
            assert_eq!(f.name.parse::<Format>().unwrap(), f);
            assert_eq!(
                FORMATS.iter().filter(|g| g.name == f.name).count(),
                1,
                "{}",
                f.name
            );
            assert!(!f.files.is_empty() && !f.arches.is_empty(), "{}", f.name);
        }
        let err = "vhd-x".parse::<Format>().unwrap_err();
        assert!(
            err.contains("raw-efi") && err.contains("kernel+initrd"),
            "{err}"
        );
    }

    #[test]
    fn suffixes_tell_formats_apart() {
        // Only the kernel, the same bytes whichever format copies it, is shared.
        let mut all: Vec<&str> = FORMATS
            .iter()
            .flat_map(|f| {
                f.files
                    .iter()
                    .filter(|o| o.role != Role::Kernel)
                    .map(|o| o.suffix)
            })
            .collect();
        all.sort();
        let n = all.len();
        all.dedup();
        assert_eq!(all.len(), n, "a suffix is used twice");
    }

    #[test]
    fn formats_missing_an_architecture_say_which_they_have() {
        let raw = Format::named("raw-efi").unwrap();
        assert!(raw.check_arch(Arch::Arm64).is_ok());
        let err = raw.check_arch(Arch::S390x).unwrap_err();
        assert_eq!(
            err,
            "the raw-efi format is not made for s390x: it exists for amd64, arm64"
        );
    }
}
