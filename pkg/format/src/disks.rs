//! The whole disks of a machine, from sysfs, and whether each may be formatted.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::probe::{self, Content};

/// Device names that are never data disks: loop, RAM, network, CD-ROM and floppy devices.
const VIRTUAL_PREFIXES: [&str; 7] = ["loop", "ram", "zram", "nbd", "sr", "fd", "md"];

/// A whole disk as sysfs describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// Kernel name (`vdb`).
    pub name: String,
    /// Its device node.
    pub dev: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// Whether the kernel has it read-only.
    pub readonly: bool,
    /// Its partitions' kernel names.
    pub partitions: Vec<String>,
}

/// The whole disks under `sys_block` (`/sys/block`), their nodes under `dev`, sorted by
/// name, loop, RAM and similar devices left out.
pub fn list(sys_block: &Path, dev: &Path) -> io::Result<Vec<Disk>> {
    let mut disks = Vec::new();
    for entry in std::fs::read_dir(sys_block)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if VIRTUAL_PREFIXES.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        let dir = sys_block.join(&name);
        let read = |file: &str| std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        // sysfs counts sizes in 512-byte sectors whatever the logical block size.
        let size = read("size").trim().parse::<u64>().unwrap_or(0) * 512;
        let readonly = read("ro").trim() == "1";
        let mut partitions: Vec<String> = std::fs::read_dir(&dir)?
            .filter_map(Result::ok)
            .filter(|e| e.path().join("partition").is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        partitions.sort();
        disks.push(Disk {
            dev: dev.join(&name),
            name,
            size,
            readonly,
            partitions,
        });
    }
    disks.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(disks)
}

/// Why a disk is not formatted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unfit {
    /// Read-only.
    ReadOnly,
    /// Zero size (an empty drive).
    Empty,
    /// It has partitions.
    Partitioned(Vec<String>),
    /// The kernel command line boots from it (`root=`).
    Boot,
    /// Mounted or otherwise held open exclusively.
    Busy,
    /// It holds a filesystem or partition table.
    Holds(Content),
}

impl fmt::Display for Unfit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unfit::ReadOnly => f.write_str("read-only"),
            Unfit::Empty => f.write_str("no medium"),
            Unfit::Partitioned(p) => write!(f, "has partitions ({})", p.join(", ")),
            Unfit::Boot => f.write_str("the boot device (root= on the kernel command line)"),
            Unfit::Busy => f.write_str("in use"),
            Unfit::Holds(c) => write!(f, "holds {c}"),
        }
    }
}

/// The disk `root=` on `cmdline` names (itself or one of its partitions), if any.
pub fn is_boot_disk(disk: &Disk, cmdline: &str) -> bool {
    cmdline
        .split_whitespace()
        .filter_map(|arg| arg.strip_prefix("root="))
        .filter_map(|root| root.strip_prefix("/dev/"))
        .any(|root| root == disk.name || disk.partitions.iter().any(|p| p == root))
}

/// Open `dev` for writing, exclusively: the kernel refuses (EBUSY) when it is mounted or
/// held by another exclusive user.
pub fn open_exclusive(dev: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_EXCL | libc::O_CLOEXEC)
        .open(dev)
}

/// Decide whether `disk` is blank and free to format; the device opened for writing when it
/// is. `force` formats over existing content (never over a read-only, boot or busy disk).
pub fn check(disk: &Disk, cmdline: &str, force: bool) -> io::Result<Result<File, Unfit>> {
    if disk.readonly {
        return Ok(Err(Unfit::ReadOnly));
    }
    if disk.size == 0 {
        return Ok(Err(Unfit::Empty));
    }
    if is_boot_disk(disk, cmdline) {
        return Ok(Err(Unfit::Boot));
    }
    if !force && !disk.partitions.is_empty() {
        return Ok(Err(Unfit::Partitioned(disk.partitions.clone())));
    }
    let mut file = match open_exclusive(&disk.dev) {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => return Ok(Err(Unfit::Busy)),
        Err(e) => return Err(e),
    };
    if !force && let Some(content) = probe::probe(&mut file)? {
        return Ok(Err(Unfit::Holds(content)));
    }
    Ok(Ok(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_sys() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let sys = dir.path().join("sys/block");
        let dev = dir.path().join("dev");
        std::fs::create_dir_all(&dev).unwrap();
        for (name, size, ro, parts) in [
            ("vda", "204800", "1", &[][..]),
            ("vdb", "2097152", "0", &[][..]),
            ("sda", "2097152", "0", &["sda1", "sda2"][..]),
            ("loop0", "100", "0", &[][..]),
            ("sr0", "0", "1", &[][..]),
        ] {
            let d = sys.join(name);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("size"), format!("{size}\n")).unwrap();
            std::fs::write(d.join("ro"), format!("{ro}\n")).unwrap();
            for p in parts {
                std::fs::create_dir_all(d.join(p)).unwrap();
                std::fs::write(d.join(p).join("partition"), "1\n").unwrap();
            }
            std::fs::create_dir_all(d.join("queue")).unwrap();
            std::fs::write(dev.join(name), vec![0u8; 70 * 1024]).unwrap();
        }
        (dir, sys, dev)
    }

    #[test]
    fn disks_are_listed_with_their_partitions_and_virtual_ones_left_out() {
        let (_dir, sys, dev) = fake_sys();
        let disks = list(&sys, &dev).unwrap();
        let names: Vec<&str> = disks.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["sda", "vda", "vdb"]);
        assert_eq!(disks[0].partitions, ["sda1", "sda2"]);
        assert!(disks[1].readonly);
        assert_eq!(disks[2].size, 1 << 30);
        assert_eq!(disks[2].dev, dev.join("vdb"));
    }

    #[test]
    fn only_blank_writable_unpartitioned_disks_that_do_not_boot_fit() {
        let (_dir, sys, dev) = fake_sys();
        let disks = list(&sys, &dev).unwrap();
        let verdict = |name: &str, cmdline: &str, force: bool| {
            let d = disks.iter().find(|d| d.name == name).unwrap();
            check(d, cmdline, force).unwrap().err()
        };
        assert_eq!(verdict("vdb", "console=ttyS0", false), None);
        assert_eq!(verdict("vda", "", false), Some(Unfit::ReadOnly));
        assert_eq!(
            verdict("sda", "", false),
            Some(Unfit::Partitioned(vec!["sda1".into(), "sda2".into()]))
        );
        assert_eq!(verdict("vdb", "root=/dev/vdb ro", false), Some(Unfit::Boot));
        assert_eq!(verdict("sda", "root=/dev/sda2", true), Some(Unfit::Boot));
        assert_eq!(verdict("sda", "", true), None, "forced over partitions");

        let mut ext = vec![0u8; 70 * 1024];
        ext[1024 + 0x38..1024 + 0x3A].copy_from_slice(&[0x53, 0xEF]);
        std::fs::write(dev.join("vdb"), ext).unwrap();
        let Some(Unfit::Holds(c)) = verdict("vdb", "", false) else {
            panic!("an ext4 signature was not seen");
        };
        assert_eq!(c.kind, probe::Kind::Ext);
        assert_eq!(verdict("vdb", "", true), None, "forced over a filesystem");
    }

    #[test]
    fn boot_disks_are_found_by_name_or_partition() {
        let disk = Disk {
            name: "vda".into(),
            dev: "/dev/vda".into(),
            size: 1,
            readonly: false,
            partitions: vec!["vda1".into()],
        };
        assert!(is_boot_disk(&disk, "console=ttyS0 root=/dev/vda"));
        assert!(is_boot_disk(&disk, "root=/dev/vda1 rootfstype=ext4"));
        assert!(!is_boot_disk(&disk, "root=/dev/vdb"));
        assert!(!is_boot_disk(&disk, "root=LABEL=vda"));
    }
}
