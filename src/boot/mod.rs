//! Boot artifacts taken from the assembled root filesystem: the kernel, its command line and
//! microcode (LinuxKit's `boot/` files), the initrd (a compressed newc cpio of everything
//! else), and unified kernel images that put them into one EFI application.

pub mod grub_pc;
pub mod initrd;
pub mod uki;

use crate::image::Arch;
use crate::tree::{Content, Inode, LeafKind, Tree, TreePath};

/// Where the kernel is in the root filesystem.
pub const KERNEL: &str = "boot/kernel";
/// Where the kernel command line is.
pub const CMDLINE: &str = "boot/cmdline";
/// Where the CPU microcode cpio is.
pub const UCODE: &str = "boot/ucode.cpio";

/// The regular file at `path` in `tree`, if there is one.
pub fn tree_file(tree: &Tree, path: &str) -> Option<Content> {
    let path = TreePath::parse(path).ok()?;
    match tree.get(&path)? {
        Inode::Leaf(l) => match &l.kind {
            LeafKind::File(c) => Some(c.clone()),
            _ => None,
        },
        Inode::Directory(_) => None,
    }
}

/// The boot files of a root filesystem.
#[derive(Debug, Clone)]
pub struct BootFiles {
    /// The kernel image.
    pub kernel: Content,
    /// The kernel command line (empty when the spec gives none).
    pub cmdline: Content,
    /// The microcode cpio, when the kernel image has one.
    pub ucode: Option<Content>,
}

impl BootFiles {
    /// The boot files of `tree`, or an error naming the format that needed a kernel.
    pub fn of(tree: &Tree, format: &str) -> Result<BootFiles, String> {
        let kernel = tree_file(tree, KERNEL).ok_or_else(|| {
            format!(
                "the {format} output needs a kernel: the spec has no kernel section (or /{KERNEL} is missing)"
            )
        })?;
        Ok(BootFiles {
            kernel,
            cmdline: tree_file(tree, CMDLINE).unwrap_or(Content::inline(Vec::new())),
            ucode: tree_file(tree, UCODE),
        })
    }

    /// The command line as text, trimmed.
    pub fn cmdline_text(&self) -> String {
        let bytes = self.cmdline.read_to_vec().unwrap_or_default();
        String::from_utf8_lossy(&bytes).trim().to_string()
    }
}

/// The removable-media path UEFI firmware boots on `arch` (`EFI/BOOT/BOOTX64.EFI`).
pub fn efi_boot_path(arch: Arch) -> Option<&'static str> {
    match arch {
        Arch::Amd64 => Some("EFI/BOOT/BOOTX64.EFI"),
        Arch::Arm64 => Some("EFI/BOOT/BOOTAA64.EFI"),
        Arch::S390x => None,
    }
}

/// Where systemd's EFI stub for `arch` is in the `boot.efi` image.
pub fn efi_stub_path(arch: Arch) -> Option<&'static str> {
    match arch {
        Arch::Amd64 => Some("usr/lib/systemd/boot/efi/linuxx64.efi.stub"),
        Arch::Arm64 => Some("usr/lib/systemd/boot/efi/linuxaa64.efi.stub"),
        Arch::S390x => None,
    }
}
