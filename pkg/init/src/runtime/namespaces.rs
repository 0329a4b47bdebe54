//! Creating, joining and binding namespaces.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::Path;

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, setns, unshare};
use nix::unistd::Pid;

use super::config::Namespace;

/// The clone flag of a namespace type as `config.json` names it (also `bindNS`'s short names).
pub fn flag(kind: &str) -> Option<CloneFlags> {
    Some(match kind {
        "pid" => CloneFlags::CLONE_NEWPID,
        "network" | "net" => CloneFlags::CLONE_NEWNET,
        "mount" | "mnt" => CloneFlags::CLONE_NEWNS,
        "ipc" => CloneFlags::CLONE_NEWIPC,
        "uts" => CloneFlags::CLONE_NEWUTS,
        "cgroup" => CloneFlags::CLONE_NEWCGROUP,
        "user" => CloneFlags::CLONE_NEWUSER,
        _ => return None,
    })
}

/// The `/proc/PID/ns/` file name of a namespace type.
pub fn proc_name(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "pid" => "pid",
        "network" | "net" => "net",
        "mount" | "mnt" => "mnt",
        "ipc" => "ipc",
        "uts" => "uts",
        "cgroup" => "cgroup",
        "user" => "user",
        _ => return None,
    })
}

/// Our mount namespace, kept to return to it.
pub fn current_mount_ns() -> Result<OwnedFd, String> {
    File::open("/proc/self/ns/mnt")
        .map(OwnedFd::from)
        .map_err(|e| format!("/proc/self/ns/mnt: {e}"))
}

/// Join the namespaces that have a path, then create the others in one unshare. A mount
/// namespace is always created: the container's root must not replace the host's.
pub fn enter(list: &[Namespace]) -> Result<(), String> {
    let mut new = CloneFlags::CLONE_NEWNS;
    for ns in list {
        let f = flag(&ns.kind).ok_or_else(|| format!("unknown namespace type {:?}", ns.kind))?;
        if f == CloneFlags::CLONE_NEWUSER {
            return Err("user namespaces are not supported by this runtime".into());
        }
        match ns.path.as_deref().filter(|p| !p.is_empty()) {
            Some(path) => {
                let fd = File::open(path).map_err(|e| format!("namespace {path}: {e}"))?;
                setns(fd, f).map_err(|e| format!("joining {} namespace {path}: {e}", ns.kind))?;
                if f == CloneFlags::CLONE_NEWNS {
                    new.remove(CloneFlags::CLONE_NEWNS);
                }
            }
            None => new.insert(f),
        }
    }
    unshare(new).map_err(|e| format!("unshare {new:?}: {e}"))
}

/// Bind `/proc/PID/ns/KIND` to each path of `bindNS`, from the host's mount namespace so the
/// bind is visible to everyone.
pub fn bind(host_mnt: &OwnedFd, pid: Pid, binds: &BTreeMap<String, String>) -> Result<(), String> {
    let own = current_mount_ns()?;
    setns(host_mnt, CloneFlags::CLONE_NEWNS).map_err(|e| format!("setns host mnt: {e}"))?;
    let result = binds
        .iter()
        .filter(|(_, path)| !path.is_empty())
        .try_for_each(|(kind, path)| {
            let name =
                proc_name(kind).ok_or_else(|| format!("bindNS: unknown namespace {kind:?}"))?;
            let target = Path::new(path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("mkdir {}: {e}", parent.display()))?;
            }
            if target.symlink_metadata().is_err() {
                File::create(target).map_err(|e| format!("bindNS {path}: {e}"))?;
            }
            let source = format!("/proc/{pid}/ns/{name}");
            mount(
                Some(source.as_str()),
                target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| format!("bindNS {kind} to {path}: {e}"))
        });
    setns(own, CloneFlags::CLONE_NEWNS).map_err(|e| format!("setns back: {e}"))?;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_flags_and_proc_files() {
        assert_eq!(flag("network"), Some(CloneFlags::CLONE_NEWNET));
        assert_eq!(flag("net"), flag("network"));
        assert_eq!(proc_name("mount"), Some("mnt"));
        assert_eq!(flag("time"), None);
    }
}
