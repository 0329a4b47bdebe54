//! Mounts described the OCI way (`type`, `source`, `options`) made with mount(2): flags from
//! the options, the rest passed as filesystem data, propagation set in a second call.

use std::path::{Path, PathBuf};

use nix::mount::{MsFlags, mount};

use super::config::Mount;

/// Flags and data of a mount's options.
#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    /// Flags for the mount call.
    pub flags: MsFlags,
    /// Propagation to set afterwards (`MS_SHARED`, `MS_PRIVATE`, ... with `MS_REC`).
    pub propagation: MsFlags,
    /// Whether this is a bind mount (`bind`, `rbind` or type `bind`).
    pub bind: bool,
    /// Filesystem-specific options, comma-separated.
    pub data: String,
}

/// Split `options` into flags, propagation and data.
pub fn parse_options(options: &[String]) -> Options {
    let mut o = Options {
        flags: MsFlags::empty(),
        propagation: MsFlags::empty(),
        bind: false,
        data: String::new(),
    };
    let mut data = Vec::new();
    for opt in options {
        let (set, clear) = match opt.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            "bind" => {
                o.bind = true;
                (MsFlags::MS_BIND, MsFlags::empty())
            }
            "rbind" => {
                o.bind = true;
                (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty())
            }
            p @ ("private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave"
            | "unbindable" | "runbindable") => {
                let kind = match p.trim_start_matches('r') {
                    "private" => MsFlags::MS_PRIVATE,
                    "shared" => MsFlags::MS_SHARED,
                    "slave" => MsFlags::MS_SLAVE,
                    _ => MsFlags::MS_UNBINDABLE,
                };
                // "rprivate", "rshared", ...: the whole subtree.
                let rec = if p.starts_with('r') {
                    MsFlags::MS_REC
                } else {
                    MsFlags::empty()
                };
                o.propagation = kind | rec;
                continue;
            }
            other => {
                data.push(other.to_string());
                continue;
            }
        };
        o.flags.insert(set);
        o.flags.remove(clear);
    }
    o.data = data.join(",");
    o
}

/// `destination` under `root` (or as is without a root).
pub fn target(root: Option<&Path>, destination: &str) -> PathBuf {
    match root {
        Some(r) => r.join(destination.trim_start_matches('/')),
        None => PathBuf::from(destination),
    }
}

/// The flags a mount of `path` already has that a remount from a user namespace must keep
/// (the kernel locks them on mounts it copies into a less privileged mount namespace).
fn current_flags(path: &Path) -> MsFlags {
    use nix::sys::statvfs::{FsFlags, statvfs};
    let Ok(st) = statvfs(path) else {
        return MsFlags::empty();
    };
    let f = st.flags();
    [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ]
    .into_iter()
    .filter(|(st, _)| f.contains(*st))
    .fold(MsFlags::empty(), |acc, (_, ms)| acc | ms)
}

/// Remount `target` (`MS_REMOUNT` is added) with `flags`; refused with EPERM, as in a user
/// namespace when locked flags would be cleared, try again keeping the mount's current ones.
pub fn remount(target: &Path, flags: MsFlags) -> nix::Result<()> {
    let none: Option<&str> = None;
    let flags = flags | MsFlags::MS_REMOUNT;
    match mount(none, target, none, flags, none) {
        Err(nix::errno::Errno::EPERM) => {
            let keep = current_flags(target);
            // The atime flags are one setting: keep the current one whole.
            let atime = MsFlags::MS_NOATIME | MsFlags::MS_RELATIME | MsFlags::MS_STRICTATIME;
            let flags = if keep.intersects(atime) {
                (flags - atime) | keep
            } else {
                flags | keep
            };
            mount(none, target, none, flags, none)
        }
        r => r,
    }
}

/// Kernel filesystems only the namespace they belong to may mount (sysfs for its network
/// namespace, cgroup2 for its cgroup namespace, mqueue for its IPC namespace): where a user
/// namespace's root cannot mount them, the host's mount is bound instead, as runc does.
fn host_fallback(fstype: &str, destination: &str) -> Option<&'static str> {
    match fstype {
        "sysfs" => Some("/sys"),
        "cgroup2" => Some("/sys/fs/cgroup"),
        "mqueue" if destination.ends_with("/dev/mqueue") => Some("/dev/mqueue"),
        _ => None,
    }
}

fn err(what: &str, target: &Path, e: impl std::fmt::Display) -> String {
    format!("{what} {}: {e}", target.display())
}

/// Make `m` (under `root` when given). Missing mount points are created: a file for a bind of
/// a file, a directory otherwise.
pub fn apply(root: Option<&Path>, m: &Mount) -> Result<(), String> {
    let target = target(root, &m.destination);
    let o = parse_options(&m.options);
    let kind = m.kind.as_str();
    let bind = o.bind || kind == "bind";
    let none: Option<&str> = None;
    if o.flags.contains(MsFlags::MS_REMOUNT) {
        if !o.flags.is_empty() && o.flags != MsFlags::MS_REMOUNT {
            remount(&target, o.flags).map_err(|e| err("remount", &target, e))?;
        }
    } else if bind {
        let source = PathBuf::from(&m.source);
        let is_dir = std::fs::metadata(&source)
            .map_err(|e| err("bind source", &source, e))?
            .is_dir();
        make_mountpoint(&target, is_dir)?;
        let flags = MsFlags::MS_BIND | (o.flags & MsFlags::MS_REC);
        mount(Some(&source), &target, none, flags, none).map_err(|e| err("bind", &target, e))?;
        let rest = o.flags - (MsFlags::MS_BIND | MsFlags::MS_REC);
        if !rest.is_empty() {
            remount(&target, MsFlags::MS_BIND | rest)
                .map_err(|e| err("remount bind", &target, e))?;
        }
    } else {
        make_mountpoint(&target, true)?;
        // Containers get the unified cgroup hierarchy, whatever the spec calls it.
        let fstype = if kind == "cgroup" { "cgroup2" } else { kind };
        let mut data = o.data.clone();
        if fstype == "overlay" {
            for part in data.split(',') {
                if let Some(dir) = part
                    .strip_prefix("upperdir=")
                    .or_else(|| part.strip_prefix("workdir="))
                {
                    std::fs::create_dir_all(dir).map_err(|e| err("mkdir", Path::new(dir), e))?;
                }
            }
        }
        if fstype == "cgroup2" {
            data.clear();
        }
        let source = if m.source.is_empty() {
            fstype
        } else {
            &m.source
        };
        let data = (!data.is_empty()).then_some(data.as_str());
        // A read-only mount of a filesystem that is mounted read-write elsewhere (cgroup2,
        // sysfs, ...) is refused with EBUSY: mount it, then make this mount read-only.
        let ro = o.flags.contains(MsFlags::MS_RDONLY);
        let flags = o.flags - MsFlags::MS_RDONLY;
        let mounted = mount(Some(source), &target, Some(fstype), flags, data);
        match (mounted, host_fallback(fstype, &m.destination)) {
            // The same filesystem is mounted right there already (cgroup2 under an rbind of
            // /sys): that mount serves.
            (Err(nix::errno::Errno::EBUSY), _) if fstype == "cgroup2" => {}
            (Err(nix::errno::Errno::EPERM), Some(host)) => {
                let rec = MsFlags::MS_BIND | MsFlags::MS_REC;
                mount(Some(host), &target, none, rec, none).map_err(|e| {
                    err(
                        &format!("binding the host's {host} for {fstype}"),
                        &target,
                        e,
                    )
                })?;
            }
            (r, _) => r.map_err(|e| err(&format!("mount {fstype}"), &target, e))?,
        }
        if ro {
            let keep = flags & (MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC);
            remount(&target, MsFlags::MS_BIND | MsFlags::MS_RDONLY | keep)
                .map_err(|e| err("read-only remount", &target, e))?;
        }
    }
    if !o.propagation.is_empty() {
        mount(none, &target, none, o.propagation, none)
            .map_err(|e| err("propagation", &target, e))?;
    }
    Ok(())
}

fn make_mountpoint(target: &Path, dir: bool) -> Result<(), String> {
    create_mountpoint(target, dir).map_err(|e| err("mount point", target, e))
}

/// Create the mount point `target` unless something is there: a directory, or an empty file
/// (its parents made) when `dir` is false.
pub fn create_mountpoint(target: &Path, dir: bool) -> std::io::Result<()> {
    if target.symlink_metadata().is_ok() {
        return Ok(());
    }
    if dir {
        return std::fs::create_dir_all(target);
    }
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::File::create(target).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> Options {
        parse_options(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn options_become_flags_propagation_and_data() {
        let o = opts(&["nosuid", "noexec", "mode=755", "size=65536k", "strictatime"]);
        assert_eq!(
            o.flags,
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_STRICTATIME
        );
        assert_eq!(o.data, "mode=755,size=65536k");
        let o = opts(&["rw", "rbind", "rshared"]);
        assert!(o.bind);
        assert_eq!(o.flags, MsFlags::MS_BIND | MsFlags::MS_REC);
        assert_eq!(o.propagation, MsFlags::MS_SHARED | MsFlags::MS_REC);
        let o = opts(&["ro", "bind", "private", "runbindable"]);
        assert_eq!(o.flags, MsFlags::MS_RDONLY | MsFlags::MS_BIND);
        assert_eq!(o.propagation, MsFlags::MS_UNBINDABLE | MsFlags::MS_REC);
        assert_eq!(opts(&["ro", "rw"]).flags, MsFlags::empty());
    }

    #[test]
    fn targets_are_under_the_root() {
        assert_eq!(
            target(Some(Path::new("/c/rootfs")), "/etc/resolv.conf"),
            Path::new("/c/rootfs/etc/resolv.conf")
        );
        assert_eq!(target(None, "/c/tmp"), Path::new("/c/tmp"));
    }
}
