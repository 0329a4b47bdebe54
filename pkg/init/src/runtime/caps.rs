//! Capability names (as in `config.json`) and the five sets applied to the process.

use rustix::thread::{
    CapabilitySet, CapabilitySets, capability_is_in_bounding_set, clear_ambient_capability_set,
    configure_capability_in_ambient_set, remove_capability_from_bounding_set, set_capabilities,
};

use super::config::Capabilities;

/// The set of the capabilities named, `CAP_NET_ADMIN` style (any case; unknown names are an
/// error). rustix's flags carry the kernel's names and numbers.
pub fn set_of(names: &[String]) -> Result<CapabilitySet, String> {
    let mut set = CapabilitySet::empty();
    for name in names {
        let upper = name.to_ascii_uppercase();
        let cap = upper
            .strip_prefix("CAP_")
            .and_then(CapabilitySet::from_name)
            .ok_or_else(|| format!("unknown capability {name:?}"))?;
        set |= cap;
    }
    Ok(set)
}

/// Drop what is not in the bounding set (needs CAP_SETPCAP: do it while still root).
pub fn limit_bounding(caps: &Capabilities) -> Result<(), String> {
    let keep = set_of(&caps.bounding)?;
    for (name, cap) in CapabilitySet::all().iter_names() {
        if !keep.contains(cap) && capability_is_in_bounding_set(cap).unwrap_or(false) {
            remove_capability_from_bounding_set(cap)
                .map_err(|e| format!("dropping CAP_{name} from the bounding set: {e}"))?;
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
