//! Capability names as the spec accepts them, checked against the bundle contract's table
//! ([`osbuild_bundle::CAPABILITIES`]): the table the init applies by number.

use osbuild_bundle::{CAPABILITIES, capability};

/// Every capability name, in the kernel's numbering order (the order `all` expands to).
pub fn all_capabilities() -> impl Iterator<Item = &'static str> {
    CAPABILITIES.iter().map(|c| c.name)
}

/// Whether `name` is a capability name as LinuxKit accepts it (`CAP_` and upper case).
pub fn is_known_capability(name: &str) -> bool {
    CAPABILITIES.iter().any(|c| c.name == name)
}

/// A suggestion for a misspelt capability: the known name it was probably meant to be.
pub fn suggest(name: &str) -> Option<&'static str> {
    capability(name).map(|c| c.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_linuxkits_spelling_is_known_and_others_get_a_suggestion() {
        assert_eq!(all_capabilities().count(), 41);
        assert_eq!(all_capabilities().next(), Some("CAP_CHOWN"));
        assert!(is_known_capability("CAP_CHECKPOINT_RESTORE"));
        assert!(!is_known_capability("cap_net_admin"));
        assert!(!is_known_capability("NET_ADMIN"));
        assert_eq!(suggest("net_admin"), Some("CAP_NET_ADMIN"));
        assert_eq!(suggest("Cap_Sys_Admin"), Some("CAP_SYS_ADMIN"));
        assert_eq!(suggest("CAP_NOPE"), None);
    }
}
