//! The system's own filesystems, host name and limits.

use std::path::Path;

use nix::mount::{MsFlags, mount};

/// One filesystem PID 1 mounts: (type, target, flags, data).
type SystemMount = (&'static str, &'static str, MsFlags, &'static str);

const NOSUID_NODEV: MsFlags = MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV);
const NOEXEC: MsFlags = NOSUID_NODEV.union(MsFlags::MS_NOEXEC);

/// The filesystems of a running system, in mounting order.
pub const MOUNTS: [SystemMount; 9] = [
    ("proc", "/proc", NOEXEC, ""),
    ("sysfs", "/sys", NOEXEC, ""),
    ("devtmpfs", "/dev", MsFlags::MS_NOSUID, "mode=0755"),
    (
        "devpts",
        "/dev/pts",
        MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC),
        "newinstance,ptmxmode=0666,mode=0620,gid=5",
    ),
    ("tmpfs", "/dev/shm", NOSUID_NODEV, "mode=1777"),
    ("tmpfs", "/run", NOSUID_NODEV, "mode=0755"),
    ("tmpfs", "/tmp", NOSUID_NODEV, "mode=1777"),
    ("tmpfs", "/var", NOSUID_NODEV, "mode=0755"),
    ("cgroup2", "/sys/fs/cgroup", NOEXEC, "nsdelegate"),
];

/// Mount [`MOUNTS`] and lay out what the system expects under them.
pub fn mount_all() -> Result<(), String> {
    // What is mounted already (the kernel may have mounted devtmpfs), read once /proc is.
    let mut mounted = String::new();
    for (fstype, target, flags, data) in MOUNTS {
        if target != "/proc" && mounted.lines().any(|l| l.split(' ').nth(1) == Some(target)) {
            continue;
        }
        mount_point(target)?;
        let data = (!data.is_empty()).then_some(data);
        mount(Some(fstype), target, Some(fstype), flags, data)
            .map_err(|e| format!("mount {fstype} on {target}: {e}"))?;
        if target == "/proc" {
            mounted = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        }
    }
    for (link, target) in [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ] {
        if Path::new(link).symlink_metadata().is_err() {
            let _ = std::os::unix::fs::symlink(target, link);
        }
    }
    // devtmpfs has its own ptmx; the newinstance devpts needs /dev/ptmx to be its own.
    if Path::new("/dev/ptmx").exists() {
        let _ = mount(
            Some("/dev/pts/ptmx"),
            "/dev/ptmx",
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        );
    }
    for dir in ["/var/log", "/var/lib", "/run/resolvconf", "/run/osbuild"] {
        std::fs::create_dir_all(dir).map_err(|e| format!("mkdir {dir}: {e}"))?;
    }
    // Images link /etc/resolv.conf here; a DHCP client fills it in.
    let resolv = Path::new("/run/resolvconf/resolv.conf");
    if !resolv.exists() {
        std::fs::write(resolv, "").map_err(|e| format!("{}: {e}", resolv.display()))?;
    }
    Ok(())
}

/// Make every mount shared, as systemd does: a container given a shared bind
/// (`/var:/var:rshared,rbind` with `rootfsPropagation: shared`, as LinuxKit's mount package
/// has) can then mount for the whole system. Containers get private copies by default.
pub fn share_mounts() -> Result<(), String> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SHARED,
        None::<&str>,
    )
    .map_err(|e| format!("making the mounts shared: {e}"))
}

/// Make sure the directory `target` is there to mount on. A read-only root (a squashfs from
/// `root=`) cannot get one: the image must hold it.
fn mount_point(target: &str) -> Result<(), String> {
    if Path::new(target).is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(target).map_err(|e| {
        if e.kind() == std::io::ErrorKind::ReadOnlyFilesystem {
            format!("the read-only root has no {target} to mount on: the image must contain it")
        } else {
            format!("mkdir {target}: {e}")
        }
    })
}

/// Make `/` read-only (this mount only: container roots bound from it stay writable for their
/// mount points).
pub fn root_readonly() -> Result<(), String> {
    let flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY;
    // A bind remount needs / to be a mount of its own, which it is after the move to tmpfs
    // (or of the root= device).
    mount(None::<&str>, "/", None::<&str>, flags, None::<&str>)
        .map_err(|e| format!("making / read-only: {e}"))
}

/// The host name: `/etc/hostname`, else `osbuild-` and the first network card's MAC address.
pub fn hostname() -> String {
    if let Ok(name) = std::fs::read_to_string("/etc/hostname") {
        let name = name.trim();
        if !name.is_empty() {
            return name.to_string();
        }
    }
    let mut cards: Vec<_> = std::fs::read_dir("/sys/class/net")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "lo")
        .collect();
    cards.sort();
    for card in cards {
        if let Ok(mac) = std::fs::read_to_string(format!("/sys/class/net/{card}/address")) {
            let hex: String = mac.trim().chars().filter(|c| *c != ':').collect();
            if !hex.is_empty() && hex.chars().any(|c| c != '0') {
                return format!("osbuild-{hex}");
            }
        }
    }
    "osbuild".into()
}

/// Set `name` as the host name.
pub fn set_hostname(name: &str) -> Result<(), String> {
    nix::unistd::sethostname(name).map_err(|e| format!("sethostname {name}: {e}"))
}

/// Raise the open-files limit, which children inherit.
pub fn rlimits() -> Result<(), String> {
    use nix::sys::resource::{Resource, setrlimit};
    let max = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1_048_576u64);
    setrlimit(Resource::RLIMIT_NOFILE, max, max).map_err(|e| format!("RLIMIT_NOFILE {max}: {e}"))
}
