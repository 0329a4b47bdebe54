//! Capability names (as in `config.json`) and the five sets applied to the process. Names are
//! looked up in the bundle contract's table ([`osbuild_bundle::CAPABILITIES`]), the one the
//! builder checks the spec against, and applied by number; rustix makes the system calls.

use osbuild_bundle::{CAPABILITIES, Capability, capability};
use rustix::thread::{
    CapabilitySet, CapabilitySets, capability_is_in_bounding_set, clear_ambient_capability_set,
    configure_capability_in_ambient_set, remove_capability_from_bounding_set, set_capabilities,
};

use super::config::Capabilities;

/// The capabilities named, `CAP_NET_ADMIN` style (any case, `CAP_` optional; unknown names
/// are an error).
fn lookup(names: &[String]) -> Result<Vec<Capability>, String> {
    names
        .iter()
        .map(|name| capability(name).ok_or_else(|| format!("unknown capability {name:?}")))
        .collect()
}

/// The one-capability set of `cap`.
fn single(cap: Capability) -> CapabilitySet {
    CapabilitySet::from_bits_retain(1 << cap.number)
}

/// The set of the capabilities named (see [`lookup`]).
pub fn set_of(names: &[String]) -> Result<CapabilitySet, String> {
    Ok(lookup(names)?
        .into_iter()
        .fold(CapabilitySet::empty(), |set, cap| set | single(cap)))
}

/// Drop what is not in the bounding set (needs CAP_SETPCAP: do it while still root).
pub fn limit_bounding(caps: &Capabilities) -> Result<(), String> {
    let keep = set_of(&caps.bounding)?;
    for cap in CAPABILITIES {
        let one = single(cap);
        if !keep.contains(one) && capability_is_in_bounding_set(one).unwrap_or(false) {
            remove_capability_from_bounding_set(one)
                .map_err(|e| format!("dropping {} from the bounding set: {e}", cap.name))?;
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
    for cap in lookup(&caps.ambient)? {
        configure_capability_in_ambient_set(single(cap), true)
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

    #[test]
    fn the_contracts_numbers_are_rustixs() {
        // The shared table against the kernel headers rustix is built from.
        for cap in CAPABILITIES {
            let bare = &cap.name["CAP_".len()..];
            assert_eq!(
                CapabilitySet::from_name(bare),
                Some(single(cap)),
                "{}",
                cap.name
            );
        }
        assert_eq!(
            CapabilitySet::all().iter_names().count(),
            CAPABILITIES.len()
        );
    }
}
