//! Creating, joining and binding namespaces.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, setns};
use nix::unistd::{Gid, Pid, Uid, setresgid, setresuid};
use osbuild_bundle::BindNs;

use super::config::{IdMapping, Namespace};

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

/// The container's namespaces: those to join (by path) and those to create.
#[derive(Debug)]
pub struct Plan {
    join: Vec<(CloneFlags, String)>,
    new: CloneFlags,
}

impl Plan {
    /// Sort `list` into joins and creations. A mount namespace is always created (the
    /// container's root must not replace the host's) unless one is joined.
    pub fn new(list: &[Namespace]) -> Result<Plan, String> {
        let mut plan = Plan {
            join: Vec::new(),
            new: CloneFlags::CLONE_NEWNS,
        };
        for ns in list {
            let f =
                flag(&ns.kind).ok_or_else(|| format!("unknown namespace type {:?}", ns.kind))?;
            match ns.path.as_deref().filter(|p| !p.is_empty()) {
                Some(path) if f == CloneFlags::CLONE_NEWUSER => {
                    return Err(format!(
                        "joining the user namespace {path} is not supported: create one with \
                         uidMappings and gidMappings"
                    ));
                }
                Some(path) => {
                    plan.join.push((f, path.to_string()));
                    if f == CloneFlags::CLONE_NEWNS {
                        plan.new.remove(CloneFlags::CLONE_NEWNS);
                    }
                }
                None => plan.new.insert(f),
            }
        }
        Ok(plan)
    }

    /// The namespaces to create.
    pub fn new_flags(&self) -> CloneFlags {
        self.new
    }

    /// Whether a namespace of this type is created or joined (not the host's).
    pub fn own(&self, f: CloneFlags) -> bool {
        self.new.contains(f) || self.join.iter().any(|(j, _)| *j == f)
    }

    /// Join the namespaces that have a path (the caller moves into them).
    pub fn join(&self) -> Result<(), String> {
        for (f, path) in &self.join {
            let fd = File::open(path).map_err(|e| format!("namespace {path}: {e}"))?;
            setns(fd, *f).map_err(|e| format!("joining namespace {path}: {e}"))?;
        }
        Ok(())
    }
}

/// Check a new user namespace's mappings: both given, both mapping the container's root
/// (which runs the setup). Mappings without a new user namespace are refused too.
pub fn check_id_maps(new_user: bool, uid: &[IdMapping], gid: &[IdMapping]) -> Result<(), String> {
    let maps_root = |m: &[IdMapping]| m.iter().any(|r| r.container_id == 0 && r.size > 0);
    match (new_user, uid.is_empty() && gid.is_empty()) {
        (false, true) => Ok(()),
        (false, false) => {
            Err("uidMappings and gidMappings need a new user namespace (userns: new)".into())
        }
        (true, _) if !maps_root(uid) || !maps_root(gid) => Err(
            "a new user namespace needs uidMappings and gidMappings that map the container's \
             id 0"
                .into(),
        ),
        (true, _) => Ok(()),
    }
}

/// The text of a `uid_map` or `gid_map` file.
pub fn id_map_text(list: &[IdMapping]) -> String {
    list.iter()
        .map(|m| format!("{} {} {}\n", m.container_id, m.host_id, m.size))
        .collect()
}

/// Write the id maps of the user namespace `pid` lives in.
pub fn write_id_maps(pid: Pid, uid: &[IdMapping], gid: &[IdMapping]) -> Result<(), String> {
    for (file, list) in [("uid_map", uid), ("gid_map", gid)] {
        let path = format!("/proc/{pid}/{file}");
        // One write: the kernel takes a map once, whole.
        std::fs::write(&path, id_map_text(list)).map_err(|e| format!("{path}: {e}"))?;
    }
    Ok(())
}

/// A process started in new namespaces and held before it runs anything, so the parent can
/// write its id maps, give it interfaces and bind its namespaces first.
pub struct Held {
    /// The process, as the parent sees it.
    pub pid: Pid,
    release: OwnedFd,
}

impl Held {
    /// Let the process go on (to its exec).
    pub fn release(self) -> Result<(), String> {
        nix::unistd::write(&self.release, b"g")
            .map(drop)
            .map_err(|e| format!("releasing the container: {e}"))
    }
}

/// Start `argv` (run as `/proc/self/exe`) in the namespaces `new` creates. The child waits
/// for [`Held::release`] (exiting if the parent dies first), becomes root of its user
/// namespace when it has a new one, then executes.
pub fn spawn_held(new: CloneFlags, argv: &[CString]) -> Result<Held, String> {
    let exe = CString::new("/proc/self/exe").map_err(|e| e.to_string())?;
    let (wait, release) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    let release_raw = release.as_raw_fd();
    let user = new.contains(CloneFlags::CLONE_NEWUSER);
    let child = move || -> isize {
        // The child's copy of the write end: closed, so the parent's death reads as EOF.
        let _ = nix::unistd::close(release_raw);
        let mut byte = [0u8; 1];
        if !matches!(nix::unistd::read(&wait, &mut byte), Ok(1)) {
            return 1;
        }
        if user {
            let root = (Uid::from_raw(0), Gid::from_raw(0));
            let r =
                setresgid(root.1, root.1, root.1).and_then(|()| setresuid(root.0, root.0, root.0));
            if let Err(e) = r {
                eprintln!("osbuild-runtime: becoming root of the user namespace: {e}");
                return 1;
            }
        }
        let Err(e) = nix::unistd::execv(&exe, argv);
        eprintln!("osbuild-runtime: exec /proc/self/exe: {e}");
        127
    };
    let mut stack = vec![0u8; 256 * 1024];
    // SAFETY: this process is single-threaded (stage 1 starts no threads), so the child, a
    // copy of it without CLONE_VM, may run the closure: it only closes and reads a pipe,
    // changes its ids and executes, all on the given stack, which is large for that.
    #[allow(unsafe_code)]
    let pid =
        unsafe { nix::sched::clone(Box::new(child), &mut stack, new, Some(nix::libc::SIGCHLD)) }
            .map_err(|e| format!("clone {new:?}: {e}"))?;
    Ok(Held { pid, release })
}

/// Bind `/proc/PID/ns/KIND` to each path of `bindNS`, from the host's mount namespace so the
/// bind is visible to everyone.
pub fn bind(host_mnt: &OwnedFd, pid: Pid, binds: &BindNs) -> Result<(), String> {
    let own = current_mount_ns()?;
    setns(host_mnt, CloneFlags::CLONE_NEWNS).map_err(|e| format!("setns host mnt: {e}"))?;
    let result = binds
        .entries()
        .into_iter()
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

    fn ns(kind: &str, path: Option<&str>) -> Namespace {
        Namespace {
            kind: kind.into(),
            path: path.map(String::from),
        }
    }

    #[test]
    fn plans_sort_joins_from_creations() {
        let p = Plan::new(&[ns("pid", None), ns("network", Some("/run/netns/x"))]).unwrap();
        assert_eq!(
            p.new_flags(),
            CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID
        );
        assert!(p.own(CloneFlags::CLONE_NEWNET) && !p.own(CloneFlags::CLONE_NEWUTS));
        let p = Plan::new(&[ns("mount", Some("/proc/1/ns/mnt"))]).unwrap();
        assert!(p.new_flags().is_empty());
        assert!(Plan::new(&[ns("user", Some("/proc/1/ns/user"))]).is_err());
        assert!(Plan::new(&[ns("time", None)]).is_err());
    }

    #[test]
    fn id_maps_must_map_root_of_a_new_user_namespace() {
        let m = |c, h, s| IdMapping {
            container_id: c,
            host_id: h,
            size: s,
        };
        let full = [m(0, 100_000, 65_536)];
        assert!(check_id_maps(true, &full, &full).is_ok());
        assert!(check_id_maps(false, &[], &[]).is_ok());
        assert!(check_id_maps(true, &[], &[]).is_err());
        assert!(check_id_maps(true, &[m(1, 1000, 10)], &full).is_err());
        assert!(check_id_maps(false, &full, &full).is_err());
        assert_eq!(
            id_map_text(&[m(0, 100_000, 1000), m(1000, 1000, 1)]),
            "0 100000 1000\n1000 1000 1\n"
        );
    }
}
