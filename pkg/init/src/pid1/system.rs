//! The system's own filesystems, host name, loopback interface and limits.

use std::path::Path;

use nix::mount::{MsFlags, mount};
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, sendto,
    socket,
};

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
        std::fs::create_dir_all(target).map_err(|e| format!("mkdir {target}: {e}"))?;
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

/// Make `/` read-only (this mount only: container roots bound from it stay writable for their
/// mount points).
pub fn root_readonly() -> Result<(), String> {
    let flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY;
    // A bind remount needs / to be a mount of its own, which it is after the move to tmpfs.
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

/// The RTM_NEWLINK request setting IFF_UP on interface `index`.
pub fn link_up_message(index: u32, seq: u32) -> Vec<u8> {
    const RTM_NEWLINK: u16 = 16;
    const NLM_F_REQUEST: u16 = 1;
    const NLM_F_ACK: u16 = 4;
    const IFF_UP: u32 = 1;
    let mut m = Vec::with_capacity(32);
    m.extend_from_slice(&32u32.to_ne_bytes()); // nlmsg_len
    m.extend_from_slice(&RTM_NEWLINK.to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid
    m.extend_from_slice(&[0, 0]); // ifi_family, pad
    m.extend_from_slice(&0u16.to_ne_bytes()); // ifi_type
    m.extend_from_slice(&(index as i32).to_ne_bytes());
    m.extend_from_slice(&IFF_UP.to_ne_bytes()); // ifi_flags
    m.extend_from_slice(&IFF_UP.to_ne_bytes()); // ifi_change
    m
}

/// Bring the interface `name` up over rtnetlink.
pub fn link_up(name: &str) -> Result<(), String> {
    let index = nix::net::if_::if_nametoindex(name).map_err(|e| format!("{name}: {e}"))?;
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )
    .map_err(|e| format!("netlink socket: {e}"))?;
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &NetlinkAddr::new(0, 0),
    )
    .map_err(|e| format!("netlink bind: {e}"))?;
    let msg = link_up_message(index, 1);
    sendto(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &msg,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )
    .map_err(|e| format!("netlink send: {e}"))?;
    let mut buf = [0u8; 512];
    let n = recv(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &mut buf,
        MsgFlags::empty(),
    )
    .map_err(|e| format!("netlink receive: {e}"))?;
    // An NLMSG_ERROR (type 2) whose error code is 0 is the acknowledgement.
    if n >= 20 && u16::from_ne_bytes([buf[4], buf[5]]) == 2 {
        let code = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
        if code != 0 {
            return Err(format!(
                "bringing {name} up: {}",
                nix::errno::Errno::from_raw(-code)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_up_message_layout() {
        let m = link_up_message(7, 3);
        assert_eq!(m.len(), 32);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 32);
        assert_eq!(u16::from_ne_bytes(m[4..6].try_into().unwrap()), 16);
        assert_eq!(i32::from_ne_bytes(m[20..24].try_into().unwrap()), 7);
        assert_eq!(u32::from_ne_bytes(m[24..28].try_into().unwrap()), 1);
    }
}
