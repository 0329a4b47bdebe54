//! `mount [-label NAME | -uuid UUID | -device DEV] [-type TYPE] [DEVICE] MOUNTPOINT`: mount a
//! filesystem found by its label, UUID or device node at MOUNTPOINT on the host, creating the
//! mount point. LinuxKit's `mountie` flags.
//!
//! The mount reaches the host, and outlives the container, through a shared bind: the
//! package binds `/var:/var:rshared,rbind` with `rootfsPropagation: shared`, as LinuxKit's
//! does, and PID 1 makes the host's mounts shared. A mount point outside `/var` needs such a
//! bind of its own in the spec.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use nix::mount::{MsFlags, mount};
use osbuild_format::flags;
use osbuild_format::probe::{self, Content};

const USAGE: &str =
    "usage: mount [-label NAME | -uuid UUID | -device DEV] [-type TYPE] [DEVICE] MOUNTPOINT";

/// Block devices never searched: loop, RAM and network devices.
const SKIPPED: [&str; 4] = ["loop", "ram", "zram", "nbd"];

fn main() -> ExitCode {
    match run(std::env::args().skip(1)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mount: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Which filesystem to mount.
#[derive(Debug, PartialEq, Eq)]
enum Source {
    Label(String),
    Uuid(String),
    Device(PathBuf),
}

#[derive(Debug, PartialEq, Eq)]
struct Request {
    source: Source,
    fstype: Option<String>,
    mountpoint: PathBuf,
}

fn request(args: impl IntoIterator<Item = String>) -> Result<Request, String> {
    let f = flags::parse(args, &["label", "uuid", "device", "type"], &[])
        .map_err(|e| format!("{e}\n{USAGE}"))?;
    let (device, mountpoint) = match f.args.as_slice() {
        [m] => (f.value("device").map(PathBuf::from), m),
        [d, m] if f.value("device").is_none() => (Some(PathBuf::from(d)), m),
        [] => return Err(format!("no mount point given\n{USAGE}")),
        _ => return Err(format!("too many arguments\n{USAGE}")),
    };
    let mut sources = Vec::new();
    if let Some(l) = f.value("label") {
        sources.push(Source::Label(l.to_string()));
    }
    if let Some(u) = f.value("uuid") {
        sources.push(Source::Uuid(u.to_ascii_lowercase()));
    }
    if let Some(d) = device {
        sources.push(Source::Device(d));
    }
    let source = match sources.len() {
        1 => sources.remove(0),
        0 => return Err("name the filesystem with -label, -uuid or -device".into()),
        _ => return Err("give only one of -label, -uuid and -device".into()),
    };
    Ok(Request {
        source,
        fstype: f.value("type").map(String::from),
        mountpoint: PathBuf::from(mountpoint),
    })
}

/// Every block device (disks and partitions) under `sys_class_block`, nodes under `dev`.
fn block_devices(sys_class_block: &Path, dev: &Path) -> Vec<PathBuf> {
    let mut names: Vec<String> = std::fs::read_dir(sys_class_block)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !SKIPPED.iter().any(|p| n.starts_with(p)))
        .collect();
    names.sort();
    names.into_iter().map(|n| dev.join(n)).collect()
}

/// The first of `devices` whose filesystem `wanted` accepts, with what it holds.
fn find(devices: &[PathBuf], wanted: impl Fn(&Content) -> bool) -> Option<(PathBuf, Content)> {
    devices.iter().find_map(|d| {
        let content = probe::probe(&mut File::open(d).ok()?).ok()??;
        (!content.kind.is_partition_table() && wanted(&content)).then(|| (d.clone(), content))
    })
}

fn run(args: impl IntoIterator<Item = String>) -> Result<(), String> {
    let req = request(args)?;
    let devices = block_devices(Path::new("/sys/class/block"), Path::new("/dev"));
    let (device, content) = match &req.source {
        Source::Label(l) => find(&devices, |c| c.label.as_deref() == Some(l.as_str()))
            .map(|(d, c)| (d, Some(c)))
            .ok_or_else(|| format!("no filesystem labelled {l:?}"))?,
        Source::Uuid(u) => find(&devices, |c| c.uuid.as_deref() == Some(u.as_str()))
            .map(|(d, c)| (d, Some(c)))
            .ok_or_else(|| format!("no filesystem with UUID {u}"))?,
        Source::Device(d) => {
            let mut file = File::open(d).map_err(|e| format!("{}: {e}", d.display()))?;
            let content = probe::probe(&mut file).map_err(|e| format!("{}: {e}", d.display()))?;
            (d.clone(), content)
        }
    };
    let fstype = match (&req.fstype, &content) {
        (Some(t), _) => t.clone(),
        (None, Some(c)) => c.kind.name().to_string(),
        (None, None) => {
            return Err(format!(
                "{}: no filesystem signature found (give -type)",
                device.display()
            ));
        }
    };
    let label = content.and_then(|c| c.label);

    let target = &req.mountpoint;
    if mounted(&device, target) {
        println!(
            "mount: {} is mounted on {} already",
            device.display(),
            target.display()
        );
        return Ok(());
    }
    std::fs::create_dir_all(target).map_err(|e| format!("{}: {e}", target.display()))?;
    mount(
        Some(&device),
        target,
        Some(fstype.as_str()),
        MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|e| {
        format!(
            "{} ({fstype}) on {}: {e}",
            device.display(),
            target.display()
        )
    })?;
    println!(
        "mount: {} ({fstype}{}) on {}",
        device.display(),
        label.map(|l| format!(", label {l:?}")).unwrap_or_default(),
        target.display()
    );
    Ok(())
}

/// Whether `device` is mounted on `target` already.
fn mounted(device: &Path, target: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let (device, target) = (device.to_string_lossy(), target.to_string_lossy());
    mounts.lines().any(|l| {
        let mut fields = l.split(' ');
        fields.next() == Some(&device) && fields.next() == Some(&target)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(line: &str) -> Result<Request, String> {
        request(line.split_whitespace().map(String::from))
    }

    #[test]
    fn mountie_command_lines_are_read() {
        assert_eq!(
            req("-label data /var/lib/redis").unwrap(),
            Request {
                source: Source::Label("data".into()),
                fstype: None,
                mountpoint: "/var/lib/redis".into(),
            }
        );
        assert_eq!(
            req("-type ext4 /dev/vdb /var/data").unwrap().source,
            Source::Device("/dev/vdb".into())
        );
        assert_eq!(
            req("-uuid ABC /m").unwrap().source,
            Source::Uuid("abc".into())
        );
    }

    #[test]
    fn mistakes_are_one_line() {
        let e = |line| req(line).unwrap_err();
        assert!(e("-label data").starts_with("no mount point given"));
        assert_eq!(e("/m"), "name the filesystem with -label, -uuid or -device");
        assert_eq!(
            e("-label a -uuid b /m"),
            "give only one of -label, -uuid and -device"
        );
        assert!(e("-label a /dev/x /m /n").starts_with("too many arguments"));
    }

    #[test]
    fn filesystems_are_found_by_label_among_block_devices() {
        let dir = tempfile::tempdir().unwrap();
        let (sys, dev) = (dir.path().join("sys"), dir.path().join("dev"));
        std::fs::create_dir_all(&dev).unwrap();
        let mut ext = vec![0u8; 70 * 1024];
        ext[1024 + 0x38..1024 + 0x3A].copy_from_slice(&[0x53, 0xEF]);
        ext[1024 + 0x78..1024 + 0x7C].copy_from_slice(b"data");
        for (name, body) in [
            ("loop0", ext.clone()),
            ("vda", vec![0u8; 70 * 1024]),
            ("vdb", ext),
        ] {
            std::fs::create_dir_all(sys.join(name)).unwrap();
            std::fs::write(dev.join(name), body).unwrap();
        }
        let devices = block_devices(&sys, &dev);
        assert_eq!(devices, [dev.join("vda"), dev.join("vdb")]);
        let (found, content) = find(&devices, |c| c.label.as_deref() == Some("data")).unwrap();
        assert_eq!(found, dev.join("vdb"));
        assert_eq!(content.kind.name(), "ext4");
        assert!(find(&devices, |c| c.label.as_deref() == Some("other")).is_none());
    }
}
