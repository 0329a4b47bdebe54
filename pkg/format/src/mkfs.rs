//! Making the ext4 filesystem with e2fsprogs' `mkfs.ext4`, the standard tool, so a data disk
//! holds what every other ext4 tool (and the kernel) expects.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

/// Where the package image has `mkfs.ext4` (from Debian's e2fsprogs).
pub const MKFS_EXT4: &str = "/sbin/mkfs.ext4";

/// Why `mkfs.ext4` did not make the filesystem.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The program could not be started.
    #[error("running {}: {source}", program.display())]
    Spawn {
        /// The program.
        program: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// It ran and failed.
    #[error("mkfs.ext4 failed ({status}): {message}")]
    Failed {
        /// How it ended.
        status: ExitStatus,
        /// What it said, as one line.
        message: String,
    },
}

/// The arguments for a data disk's filesystem labelled `label` (none when empty) on `device`.
///
/// Debian's `/etc/mke2fs.conf` ext4 defaults (extents, a journal, metadata checksums, 64bit,
/// flex_bg), but 4 KiB blocks whatever the size: that file gives disks under 512 MiB 1 KiB
/// blocks, which would stay when the disk is grown. `-F` because the target is a whole disk
/// and nothing answers questions at boot (a single `-F` still refuses a mounted device).
/// Inode tables are left for the kernel to zero after the first mount (`lazy_itable_init=1`):
/// mkfs decides that itself only when it sees `/sys/fs/ext4`, which the container need not,
/// and zeroing them at boot writes 1/64 of the disk. The journal is still zeroed (at most
/// 1 GiB), so no block a previous user of the disk left can be replayed as ours.
pub fn args(device: &Path, label: &str) -> Vec<OsString> {
    let mut args: Vec<OsString> = ["-q", "-F", "-t", "ext4", "-b", "4096"]
        .map(OsString::from)
        .into();
    if !label.is_empty() {
        args.extend(["-L".into(), label.into()]);
    }
    args.extend([
        "-E".into(),
        "lazy_itable_init=1".into(),
        device.as_os_str().to_owned(),
    ]);
    args
}

/// Run `program` (`mkfs.ext4`) to make an ext4 filesystem labelled `label` on `device`, which
/// must not be held open exclusively: mkfs opens it so itself.
pub fn ext4(program: &Path, device: &Path, label: &str) -> Result<(), Error> {
    let output = Command::new(program)
        .args(args(device, label))
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Spawn {
            program: program.to_owned(),
            source,
        })?;
    if output.status.success() {
        return Ok(());
    }
    Err(Error::Failed {
        status: output.status,
        message: complaint(&String::from_utf8_lossy(&output.stderr)),
    })
}

/// What mkfs wrote to stderr as one line: its non-empty lines, without the program name it
/// puts first, joined by `; `.
fn complaint(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            ["mkfs.ext4: ", "mke2fs: "]
                .iter()
                .find_map(|p| l.strip_prefix(p))
                .unwrap_or(l)
        })
        .collect();
    if lines.is_empty() {
        "no message".into()
    } else {
        lines.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{self, Kind};

    #[test]
    fn a_data_disk_is_made_quietly_unasked_and_labelled() {
        let line = |label| {
            args(Path::new("/dev/vdb"), label)
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(
            line("data"),
            "-q -F -t ext4 -b 4096 -L data -E lazy_itable_init=1 /dev/vdb"
        );
        assert_eq!(
            line(""),
            "-q -F -t ext4 -b 4096 -E lazy_itable_init=1 /dev/vdb"
        );
    }

    #[test]
    fn complaints_are_one_line() {
        assert_eq!(
            complaint(
                "mkfs.ext4: No such file or directory while trying to determine filesystem size\n"
            ),
            "No such file or directory while trying to determine filesystem size"
        );
        assert_eq!(
            complaint("\n/dev/vdb is mounted; will not make a filesystem here!\n\nmke2fs: x\n"),
            "/dev/vdb is mounted; will not make a filesystem here!; x"
        );
        assert_eq!(complaint(""), "no message");
    }

    /// The host's mkfs.ext4, where there is one.
    fn host_mkfs() -> Option<&'static Path> {
        ["/sbin/mkfs.ext4", "/usr/sbin/mkfs.ext4"]
            .map(Path::new)
            .into_iter()
            .find(|p| p.is_file())
    }

    #[test]
    fn the_hosts_mkfs_makes_a_labelled_filesystem_or_says_why_not() {
        let Some(mkfs) = host_mkfs() else {
            return osbuild_test_skip::skip("mkfs.ext4 is not installed");
        };
        let file = tempfile::NamedTempFile::new().unwrap();
        file.as_file().set_len(32 << 20).unwrap();
        ext4(mkfs, file.path(), "data").unwrap();
        let c = probe::probe(&mut std::fs::File::open(file.path()).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!((c.kind, c.label.as_deref()), (Kind::Ext, Some("data")));
        assert!(c.uuid.is_some());

        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("vdz");
        let e = ext4(mkfs, &missing, "data").unwrap_err().to_string();
        assert!(e.starts_with("mkfs.ext4 failed (exit status: 1): "), "{e}");
        assert!(e.contains(&*missing.to_string_lossy()), "{e}");
        assert!(!e.contains('\n'), "{e}");

        let e = ext4(&dir.path().join("nope"), &missing, "").unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("running {}/nope: ", dir.path().display())),
            "{e}"
        );
    }
}
