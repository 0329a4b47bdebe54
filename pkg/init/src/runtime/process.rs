//! The container process's limits and identity: rlimits, groups, uid/gid and capabilities.

use nix::sys::resource::{Resource, setrlimit};
use nix::unistd::{Gid, Uid, setgroups, setresgid, setresuid};

use super::caps;
use super::config::{Process, Rlimit};

/// The resource named `RLIMIT_...`.
pub fn resource(name: &str) -> Option<Resource> {
    Some(match name.trim_start_matches("RLIMIT_") {
        "AS" => Resource::RLIMIT_AS,
        "CORE" => Resource::RLIMIT_CORE,
        "CPU" => Resource::RLIMIT_CPU,
        "DATA" => Resource::RLIMIT_DATA,
        "FSIZE" => Resource::RLIMIT_FSIZE,
        "LOCKS" => Resource::RLIMIT_LOCKS,
        "MEMLOCK" => Resource::RLIMIT_MEMLOCK,
        "MSGQUEUE" => Resource::RLIMIT_MSGQUEUE,
        "NICE" => Resource::RLIMIT_NICE,
        "NOFILE" => Resource::RLIMIT_NOFILE,
        "NPROC" => Resource::RLIMIT_NPROC,
        "RSS" => Resource::RLIMIT_RSS,
        "RTPRIO" => Resource::RLIMIT_RTPRIO,
        "RTTIME" => Resource::RLIMIT_RTTIME,
        "SIGPENDING" => Resource::RLIMIT_SIGPENDING,
        "STACK" => Resource::RLIMIT_STACK,
        _ => return None,
    })
}

/// Apply `process.rlimits`.
pub fn set_rlimits(limits: &[Rlimit]) -> Result<(), String> {
    for l in limits {
        let r = resource(&l.kind).ok_or_else(|| format!("unknown rlimit {:?}", l.kind))?;
        setrlimit(r, l.soft, l.hard).map_err(|e| format!("setrlimit {}: {e}", l.kind))?;
    }
    Ok(())
}

/// Drop the bounding set, switch to the configured groups and ids, then set the
/// capability sets (kept across the uid change with `PR_SET_KEEPCAPS`).
pub fn set_identity(p: &Process) -> Result<(), String> {
    if let Some(c) = &p.capabilities {
        caps::limit_bounding(c)?;
    }
    rustix::thread::set_keep_capabilities(true).map_err(|e| format!("keepcaps: {e}"))?;
    let groups: Vec<Gid> = p
        .user
        .additional_gids
        .iter()
        .map(|g| Gid::from_raw(*g))
        .collect();
    setgroups(&groups).map_err(|e| format!("setgroups {:?}: {e}", p.user.additional_gids))?;
    let gid = Gid::from_raw(p.user.gid);
    setresgid(gid, gid, gid).map_err(|e| format!("setgid {gid}: {e}"))?;
    let uid = Uid::from_raw(p.user.uid);
    setresuid(uid, uid, uid).map_err(|e| format!("setuid {uid}: {e}"))?;
    rustix::thread::set_keep_capabilities(false).map_err(|e| format!("keepcaps: {e}"))?;
    match &p.capabilities {
        Some(c) => caps::apply(c),
        None => caps::apply(&Default::default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rlimit_names() {
        assert_eq!(resource("RLIMIT_NOFILE"), Some(Resource::RLIMIT_NOFILE));
        assert_eq!(resource("NPROC"), Some(Resource::RLIMIT_NPROC));
        assert_eq!(resource("RLIMIT_BOGUS"), None);
    }
}
