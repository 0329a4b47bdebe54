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
    /// An archive holding a disk image, to upload to a cloud or import (OVA, GCE's tar.gz).
    Archive,
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
    /// Either: the disk carries both boot paths (QEMU boots it through UEFI).
    #[serde(rename = "uefi+bios")]
    UefiAndBios,
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

/// The boot layout a VM disk holds (`--boot`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskBoot {
    /// raw-efi's layout: GPT, an EFI system partition with a unified kernel image.
    Efi,
    /// raw-bios's layout: MBR, GRUB for BIOS, a FAT partition with kernel and initrd.
    Bios,
    /// Both paths on one GPT disk: GRUB for BIOS in a BIOS boot partition and the unified
    /// kernel image on the EFI system partition (amd64).
    Both,
}

impl DiskBoot {
    /// The firmware a disk of this layout boots through.
    pub fn firmware(self) -> Firmware {
        match self {
            DiskBoot::Efi => Firmware::Uefi,
            DiskBoot::Bios => Firmware::Bios,
            DiskBoot::Both => Firmware::UefiAndBios,
        }
    }

    /// The architectures the layout exists for.
    pub fn arches(self) -> &'static [Arch] {
        match self {
            DiskBoot::Efi => EFI_ARCHES,
            DiskBoot::Bios | DiskBoot::Both => &[Arch::Amd64],
        }
    }

    /// What a disk of this layout needs beyond the root filesystem.
    pub fn needs(self) -> Needs {
        Needs {
            kernel: true,
            efi_stub: self != DiskBoot::Bios,
            bios_loader: self != DiskBoot::Efi,
        }
    }
}

impl FromStr for DiskBoot {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "efi" | "uefi" => Ok(DiskBoot::Efi),
            "bios" => Ok(DiskBoot::Bios),
            "both" => Ok(DiskBoot::Both),
            other => Err(format!(
                "unknown boot layout {other:?}: use efi, bios or both"
            )),
        }
    }
}

impl fmt::Display for DiskBoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DiskBoot::Efi => "efi",
            DiskBoot::Bios => "bios",
            DiskBoot::Both => "both",
        })
    }
}

/// The file a VM disk format wraps its raw disk in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// The raw disk itself, sparse.
    Raw,
    /// qcow2 version 3.
    Qcow2,
    /// A fixed VHD (the raw disk and a footer).
    VhdFixed,
    /// A dynamic (sparse) VHD.
    VhdDynamic,
    /// VHDX.
    Vhdx,
    /// A streamOptimized VMDK.
    Vmdk,
    /// An OVA: an OVF descriptor, a manifest and a streamOptimized VMDK in a tar.
    Ova,
    /// `disk.raw` in a gzip'd GNU sparse tar, as GCE imports it.
    GceTarGz,
}

impl Container {
    /// The name QEMU's `format=` gives the container, when QEMU boots it directly.
    pub fn qemu_format(self) -> Option<&'static str> {
        match self {
            Container::Raw => Some("raw"),
            Container::Qcow2 => Some("qcow2"),
            Container::VhdFixed | Container::VhdDynamic => Some("vpc"),
            Container::Vhdx => Some("vhdx"),
            Container::Vmdk => Some("vmdk"),
            Container::Ova | Container::GceTarGz => None,
        }
    }
}

/// The sizes a disk format takes.
#[derive(Debug, Clone, Copy)]
pub struct SizeRule {
    /// Sizes are a whole multiple of this.
    pub align: u64,
    /// Who requires the alignment, when a `--size` off it is refused rather than rounded up
    /// (`"Azure"`).
    pub strict: Option<&'static str>,
    /// The largest size the format holds.
    pub max: u64,
}

/// Whole MiB (a `--size` off them is rounded up), at most `max`.
const fn mib_aligned(max: u64) -> SizeRule {
    SizeRule {
        align: 1 << 20,
        strict: None,
        max,
    }
}

/// The rule of raw disks and of formats without a rule of their own.
const MIB_ALIGNED: SizeRule = mib_aligned(64 << 40);

/// A VM disk format: a raw disk layout in a container.
#[derive(Debug, Clone, Copy)]
pub struct VmDisk {
    /// The file it is.
    pub container: Container,
    /// The layouts it can hold; the first one the architecture has is the default.
    pub boots: &'static [DiskBoot],
    /// Its sizes.
    pub size: SizeRule,
}

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
    /// For VM disk formats: the container and the layouts it holds.
    pub vm: Option<VmDisk>,
}

const ALL: &[Arch] = &[Arch::Amd64, Arch::Arm64, Arch::S390x];
const EFI_ARCHES: &[Arch] = &[Arch::Amd64, Arch::Arm64];

/// A VM disk format's table entry: one file, written by [`super::vm_disk::write`]; what it
/// needs and how it boots follow the layout chosen (`FormatInfo::needs_for`, `boot_for`).
macro_rules! vm_format {
    ($name:expr, $summary:expr, $arches:expr, $role:expr, $suffix:expr, $container:expr, $boots:expr, $size:expr $(,)?) => {
        FormatInfo {
            name: $name,
            summary: $summary,
            arches: $arches,
            files: &[OutputFile {
                suffix: $suffix,
                role: $role,
            }],
            needs: Needs {
                kernel: true,
                efi_stub: false,
                bios_loader: false,
            },
            boot: Boot::Disk(Firmware::Uefi),
            writer: super::vm_disk::write,
            stream: None,
            vm: Some(VmDisk {
                container: $container,
                boots: $boots,
                size: $size,
            }),
        }
    };
}

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
        vm: None,
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
        vm: None,
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
        vm: None,
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
        vm: None,
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
        vm: None,
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
        vm: None,
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
        vm: None,
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
        vm: None,
    },
    vm_format!(
        "qcow2-efi",
        "NAME-efi.qcow2: raw-efi's disk as qcow2 (v3, only clusters holding data; --compress-clusters)",
        EFI_ARCHES,
        Role::Disk,
        "-efi.qcow2",
        Container::Qcow2,
        &[DiskBoot::Efi],
        mib_aligned(crate::disk::vm::qcow2::MAX_SIZE),
    ),
    vm_format!(
        "qcow2-bios",
        "NAME.qcow2: raw-bios's disk as qcow2 (v3, only clusters holding data; --compress-clusters)",
        &[Arch::Amd64],
        Role::Disk,
        ".qcow2",
        Container::Qcow2,
        &[DiskBoot::Bios],
        mib_aligned(crate::disk::vm::qcow2::MAX_SIZE),
    ),
    vm_format!(
        "vhd",
        "NAME.vhd: a fixed VHD as Azure takes it (whole MiB, UEFI/Gen 2 unless --boot bios)",
        EFI_ARCHES,
        Role::Disk,
        ".vhd",
        Container::VhdFixed,
        ALL_BOOTS,
        SizeRule {
            align: 1 << 20,
            strict: Some("Azure"),
            max: crate::disk::vm::vhd::MAX_SIZE,
        },
    ),
    vm_format!(
        "dynamic-vhd",
        "NAME-dynamic.vhd: a dynamic (sparse) VHD",
        EFI_ARCHES,
        Role::Disk,
        "-dynamic.vhd",
        Container::VhdDynamic,
        ALL_BOOTS,
        mib_aligned(crate::disk::vm::vhd::MAX_SIZE),
    ),
    vm_format!(
        "vhdx",
        "NAME.vhdx: a dynamic VHDX, as Hyper-V Generation 2 boots it (GPT, UEFI)",
        EFI_ARCHES,
        Role::Disk,
        ".vhdx",
        Container::Vhdx,
        ALL_BOOTS,
        mib_aligned(crate::disk::vm::vhdx::MAX_SIZE),
    ),
    vm_format!(
        "vmdk",
        "NAME.vmdk: a streamOptimized VMDK, as vSphere and EC2 import it",
        EFI_ARCHES,
        Role::Disk,
        ".vmdk",
        Container::Vmdk,
        ALL_BOOTS,
        mib_aligned(crate::disk::vm::vmdk::MAX_SIZE),
    ),
    vm_format!(
        "ova",
        "NAME.ova: an OVF appliance (descriptor, SHA-256 manifest, streamOptimized VMDK)",
        EFI_ARCHES,
        Role::Archive,
        ".ova",
        Container::Ova,
        ALL_BOOTS,
        mib_aligned(crate::disk::vm::vmdk::MAX_SIZE),
    ),
    vm_format!(
        "gcp",
        "NAME.img.tar.gz: disk.raw (a whole GiB, sparse) in a gzip'd GNU tar, as GCE imports it",
        EFI_ARCHES,
        Role::Archive,
        ".img.tar.gz",
        Container::GceTarGz,
        ALL_BOOTS,
        SizeRule {
            align: 1 << 30,
            strict: Some("GCE"),
            max: 64 << 40,
        },
    ),
    vm_format!(
        "aws",
        "NAME.raw: a sparse raw disk for EC2 import (amd64: BIOS and UEFI; arm64: UEFI)",
        EFI_ARCHES,
        Role::Disk,
        ".raw",
        Container::Raw,
        &[DiskBoot::Both, DiskBoot::Efi, DiskBoot::Bios],
        MIB_ALIGNED,
    ),
];

const ALL_BOOTS: &[DiskBoot] = &[DiskBoot::Efi, DiskBoot::Bios, DiskBoot::Both];

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

impl Format {
    /// The layout this format's disk holds for `arch` when `asked` (`--boot`) or by default;
    /// `None` for formats that are not VM disks. Refuses a layout the format or the
    /// architecture lacks.
    pub fn disk_boot(
        self,
        arch: Arch,
        asked: Option<DiskBoot>,
    ) -> Result<Option<DiskBoot>, String> {
        let Some(vm) = self.0.vm else {
            return Ok(None);
        };
        let available = |b: &DiskBoot| b.arches().contains(&arch);
        match asked {
            None => vm
                .boots
                .iter()
                .copied()
                .find(available)
                .map(Some)
                .ok_or_else(|| format!("the {} format has no boot layout for {arch}", self.0.name)),
            Some(b) if !vm.boots.contains(&b) => Err(format!(
                "--boot {b}: the {} format holds only the {} layout",
                self.0.name,
                vm.boots
                    .iter()
                    .map(|b| b.to_string())
                    .collect::<Vec<_>>()
                    .join(" or ")
            )),
            Some(b) if !available(&b) => Err(format!(
                "--boot {b}: {arch} has no BIOS; the {} format boots there through UEFI (--boot efi)",
                self.0.name
            )),
            Some(b) => Ok(Some(b)),
        }
    }

    /// What the format needs beyond the root filesystem with the disk layout `boot`.
    pub fn needs_for(self, boot: Option<DiskBoot>) -> Needs {
        boot.map_or(self.0.needs, DiskBoot::needs)
    }

    /// How the format boots with the disk layout `boot`.
    pub fn boot_for(self, boot: Option<DiskBoot>) -> Boot {
        boot.map_or(self.0.boot, |b| Boot::Disk(b.firmware()))
    }

    /// The disk size for content needing `needed` bytes and the `--size` asked: rounded up
    /// to the format's alignment; a `--size` too small, too large or (where a platform
    /// requires it) not aligned is refused in one line.
    pub fn disk_size(self, needed: u64, asked: Option<u64>) -> Result<u64, String> {
        let rule = self.0.vm.map_or(MIB_ALIGNED, |vm| vm.size);
        let human = |n: u64| crate::disk::human_size(n);
        let size = match asked {
            Some(size) if size < needed => {
                return Err(format!(
                    "--size {} is too small for {}: the content needs at least {}",
                    human(size),
                    self.0.name,
                    human(needed.next_multiple_of(1 << 20))
                ));
            }
            Some(size) if size % rule.align != 0 && rule.strict.is_some() => {
                let down = size / rule.align * rule.align;
                let up = down + rule.align;
                return Err(format!(
                    "--size {}: {} needs a {} disk to be a whole number of {}: use {}{}",
                    human(size),
                    rule.strict.unwrap_or_default(),
                    self.0.name,
                    human(rule.align),
                    if down >= needed && down > 0 {
                        format!("{} or ", human(down))
                    } else {
                        String::new()
                    },
                    human(up)
                ));
            }
            Some(size) => size.next_multiple_of(rule.align),
            None => needed.next_multiple_of(rule.align),
        };
        if size > rule.max {
            return Err(format!(
                "--size {}: the {} format holds at most {}",
                human(size),
                self.0.name,
                human(rule.max)
            ));
        }
        Ok(size)
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
