//! Capability names (as in `config.json`) and the five sets applied to the process.

use rustix::thread::{
    CapabilitySet, CapabilitySets, capability_is_in_bounding_set, clear_ambient_capability_set,
    configure_capability_in_ambient_set, remove_capability_from_bounding_set, set_capabilities,
};

use super::config::Capabilities;

/// Capability names in the kernel's numbering (CAP_CHOWN is 0).
pub const NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The set of the capabilities named (unknown names are an error).
pub fn set_of(names: &[String]) -> Result<CapabilitySet, String> {
    let mut set = CapabilitySet::empty();
    for name in names {
        let n = NAMES
            .iter()
            .position(|c| c.eq_ignore_ascii_case(name))
            .ok_or_else(|| format!("unknown capability {name:?}"))?;
        set |= CapabilitySet::from_bits_retain(1 << n);
    }
    Ok(set)
}

/// Drop what is not in the bounding set (needs CAP_SETPCAP: do it while still root).
pub fn limit_bounding(caps: &Capabilities) -> Result<(), String> {
    let keep = set_of(&caps.bounding)?;
    for (n, name) in NAMES.iter().enumerate() {
        let cap = CapabilitySet::from_bits_retain(1 << n);
        if !keep.contains(cap) && capability_is_in_bounding_set(cap).unwrap_or(false) {
            remove_capability_from_bounding_set(cap)
                .map_err(|e| format!("dropping {name} from the bounding set: {e}"))?;
        }
    }
    Ok(())
}

/// Set the effective, permitted and inheritable sets, then the ambient set.
pub fn apply(caps: &Capabilities) -> Result<(), String> {
    let sets = CapabilitySets {
        effective: set_of(&caps.effective)?,
        permitted: set_of(&caps.permitted)?,
        inheritable: set_of(&caps.inheritable)?,
    };
    set_capabilities(None, sets).map_err(|e| format!("capset: {e}"))?;
    clear_ambient_capability_set().map_err(|e| format!("clearing ambient capabilities: {e}"))?;
    for cap in set_of(&caps.ambient)?.iter() {
        configure_capability_in_ambient_set(cap, true)
            .map_err(|e| format!("raising an ambient capability: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_kernel_numbers() {
        let s = set_of(&["CAP_NET_BIND_SERVICE".into(), "cap_sys_admin".into()]).unwrap();
        assert_eq!(
            s,
            CapabilitySet::NET_BIND_SERVICE | CapabilitySet::SYS_ADMIN
        );
        assert_eq!(
            set_of(&["CAP_CHECKPOINT_RESTORE".into()]).unwrap().bits(),
            1 << 40
        );
        assert!(
            set_of(&["CAP_NOPE".into()])
                .unwrap_err()
                .contains("CAP_NOPE")
        );
    }
}
