//! `format [-type ext4] [-label NAME] [-force] [-verbose] [DEVICE]`: make an ext4 filesystem
//! on DEVICE, or on the first blank disk, for persistent data. LinuxKit's `format` flags.
//!
//! A disk is blank when it is writable, not the boot device, not in use, unpartitioned and
//! holds no known filesystem or partition table signature. `-force` formats DEVICE over
//! whatever it holds. A disk already holding an ext4 filesystem labelled NAME is left alone,
//! so the same command runs on every boot. The filesystem is made by e2fsprogs' `mkfs.ext4`.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use osbuild_format::disks::{self, Disk};
use osbuild_format::probe::{self, Kind};
use osbuild_format::{flags, mkfs};

const USAGE: &str = "usage: format [-type ext4] [-label NAME] [-force] [-verbose] [DEVICE]";

fn main() -> ExitCode {
    match run(std::env::args().skip(1)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("format: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What the command line asks for.
struct Request {
    label: String,
    force: bool,
    verbose: bool,
    device: Option<PathBuf>,
}

fn request(args: impl IntoIterator<Item = String>) -> Result<Request, String> {
    let f = flags::parse(args, &["type", "label"], &["force", "verbose"])
        .map_err(|e| format!("{e}\n{USAGE}"))?;
    match f.value("type").unwrap_or("ext4") {
        "ext4" => {}
        other => return Err(format!("unsupported filesystem type {other:?}: only ext4")),
    }
    let label = f.value("label").unwrap_or_default().to_string();
    if label.len() > 16 {
        return Err(format!("label {label:?} is longer than 16 bytes"));
    }
    if f.args.len() > 1 {
        return Err(format!("more than one device given\n{USAGE}"));
    }
    let device = f.args.first().map(PathBuf::from);
    if f.switch("force") && device.is_none() {
        return Err("-force formats the one DEVICE given, and none was".into());
    }
    Ok(Request {
        label,
        force: f.switch("force"),
        verbose: f.switch("verbose"),
        device,
    })
}

fn run(args: impl IntoIterator<Item = String>) -> Result<(), String> {
    let req = request(args)?;
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let all = disks::list(Path::new("/sys/block"), Path::new("/dev"))
        .map_err(|e| format!("/sys/block: {e}"))?;
    let candidates = match &req.device {
        Some(dev) => vec![named(dev, &all)?],
        None => all,
    };

    if !req.label.is_empty()
        && let Some(done) = candidates.iter().find(|d| holds_label(d, &req.label))
    {
        println!(
            "format: {} already holds an ext4 filesystem labelled {:?}: left alone",
            done.dev.display(),
            req.label
        );
        return Ok(());
    }

    for disk in &candidates {
        let checked = disks::check(disk, &cmdline, req.force)
            .map_err(|e| format!("{}: {e}", disk.dev.display()))?;
        match checked {
            Ok(file) => return make(disk, file, &req),
            Err(why) if req.device.is_some() => {
                let hint = if req.force {
                    ""
                } else {
                    " (-force to format it anyway)"
                };
                return Err(format!("{}: {why}{hint}", disk.dev.display()));
            }
            Err(why) => {
                if req.verbose || matches!(why, disks::Unfit::Holds(_)) {
                    println!("format: {}: skipped: {why}", disk.dev.display());
                }
            }
        }
    }
    Err("no blank disk found".into())
}

/// The disk (or partition) at `dev`, as sysfs describes it.
fn named(dev: &Path, all: &[Disk]) -> Result<Disk, String> {
    let real = std::fs::canonicalize(dev).map_err(|e| format!("{}: {e}", dev.display()))?;
    let name = real
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Some(d) = all.iter().find(|d| d.name == name) {
        return Ok(d.clone());
    }
    // A partition: /sys/class/block has it too.
    let sys = Path::new("/sys/class/block").join(&name);
    let read = |f: &str| std::fs::read_to_string(sys.join(f)).unwrap_or_default();
    if !sys.join("partition").is_file() {
        return Err(format!(
            "{}: not a disk or partition the kernel knows",
            dev.display()
        ));
    }
    Ok(Disk {
        name,
        dev: real,
        size: read("size").trim().parse::<u64>().unwrap_or(0) * 512,
        readonly: read("ro").trim() == "1",
        partitions: Vec::new(),
    })
}

/// Whether `disk` holds an ext4 filesystem labelled `label`.
fn holds_label(disk: &Disk, label: &str) -> bool {
    let Ok(mut file) = std::fs::File::open(&disk.dev) else {
        return false;
    };
    matches!(
        probe::probe(&mut file),
        Ok(Some(c)) if c.kind == Kind::Ext && c.label.as_deref() == Some(label)
    )
}

/// Make the filesystem on `disk`, which `file` holds open exclusively.
fn make(disk: &Disk, mut file: std::fs::File, req: &Request) -> Result<(), String> {
    let dev = disk.dev.display();
    if req.force {
        // Signatures at the end (a GPT's backup header, RAID superblocks) would outlive the
        // new filesystem.
        let tail = disk.size.min(1 << 20);
        file.seek(SeekFrom::Start(disk.size - tail))
            .and_then(|_| file.write_all(&vec![0u8; tail as usize]))
            .and_then(|_| file.sync_all())
            .map_err(|e| format!("{dev}: clearing its last MiB: {e}"))?;
    }
    // mkfs.ext4 opens the device exclusively itself, so it still refuses one mounted since.
    drop(file);
    mkfs::ext4(Path::new(mkfs::MKFS_EXT4), &disk.dev, &req.label)
        .map_err(|e| format!("{dev}: {e}"))?;
    let made = std::fs::File::open(&disk.dev)
        .and_then(|mut f| probe::probe(&mut f))
        .map_err(|e| format!("{dev}: reading the new filesystem: {e}"))?;
    let uuid = match made {
        Some(c) if c.kind == Kind::Ext && c.label.as_deref().unwrap_or_default() == req.label => {
            c.uuid.unwrap_or_default()
        }
        other => {
            let held = other.map_or("nothing known".to_string(), |c| c.to_string());
            return Err(format!(
                "{dev}: mkfs.ext4 succeeded but the disk holds {held}"
            ));
        }
    };
    println!(
        "format: made an ext4 filesystem labelled {:?} on {dev} ({} MiB, uuid {uuid})",
        req.label,
        disk.size >> 20,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(line: &str) -> Result<Request, String> {
        request(line.split_whitespace().map(String::from))
    }

    #[test]
    fn linuxkit_command_lines_are_accepted() {
        let r = req("-type ext4 -label data /dev/vdb").unwrap();
        assert_eq!((r.label.as_str(), r.force), ("data", false));
        assert_eq!(r.device, Some(PathBuf::from("/dev/vdb")));
        assert!(req("-force -verbose /dev/sdb").unwrap().force);
        assert!(req("").unwrap().device.is_none());
    }

    #[test]
    fn unsupported_requests_are_refused_in_one_line() {
        let e = |line| req(line).err().unwrap();
        assert_eq!(
            e("-type xfs"),
            "unsupported filesystem type \"xfs\": only ext4"
        );
        assert_eq!(
            e("-label a-label-of-17-chr"),
            "label \"a-label-of-17-chr\" is longer than 16 bytes"
        );
        assert_eq!(
            e("-force"),
            "-force formats the one DEVICE given, and none was"
        );
        assert!(e("/dev/a /dev/b").starts_with("more than one device given"));
        assert!(e("-partition gpt").starts_with("unknown flag -partition"));
    }
}
