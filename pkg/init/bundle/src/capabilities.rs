//! Linux capabilities: the kernel's names and numbers, in the kernel's order (the order `all`
//! expands to).

/// One Linux capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Capability {
    /// The kernel's name, `CAP_` and upper case.
    pub name: &'static str,
    /// The kernel's number (the bit in a capability set).
    pub number: u8,
}

macro_rules! table {
    ($($name:literal = $number:literal,)*) => {
        /// Every capability Linux knows, in number order.
        pub const CAPABILITIES: [Capability; 41] = [
            $(Capability { name: $name, number: $number },)*
        ];
    };
}

table! {
    "CAP_CHOWN" = 0,
    "CAP_DAC_OVERRIDE" = 1,
    "CAP_DAC_READ_SEARCH" = 2,
    "CAP_FOWNER" = 3,
    "CAP_FSETID" = 4,
    "CAP_KILL" = 5,
    "CAP_SETGID" = 6,
    "CAP_SETUID" = 7,
    "CAP_SETPCAP" = 8,
    "CAP_LINUX_IMMUTABLE" = 9,
    "CAP_NET_BIND_SERVICE" = 10,
    "CAP_NET_BROADCAST" = 11,
    "CAP_NET_ADMIN" = 12,
    "CAP_NET_RAW" = 13,
    "CAP_IPC_LOCK" = 14,
    "CAP_IPC_OWNER" = 15,
    "CAP_SYS_MODULE" = 16,
    "CAP_SYS_RAWIO" = 17,
    "CAP_SYS_CHROOT" = 18,
    "CAP_SYS_PTRACE" = 19,
    "CAP_SYS_PACCT" = 20,
    "CAP_SYS_ADMIN" = 21,
    "CAP_SYS_BOOT" = 22,
    "CAP_SYS_NICE" = 23,
    "CAP_SYS_RESOURCE" = 24,
    "CAP_SYS_TIME" = 25,
    "CAP_SYS_TTY_CONFIG" = 26,
    "CAP_MKNOD" = 27,
    "CAP_LEASE" = 28,
    "CAP_AUDIT_WRITE" = 29,
    "CAP_AUDIT_CONTROL" = 30,
    "CAP_SETFCAP" = 31,
    "CAP_MAC_OVERRIDE" = 32,
    "CAP_MAC_ADMIN" = 33,
    "CAP_SYSLOG" = 34,
    "CAP_WAKE_ALARM" = 35,
    "CAP_BLOCK_SUSPEND" = 36,
    "CAP_AUDIT_READ" = 37,
    "CAP_PERFMON" = 38,
    "CAP_BPF" = 39,
    "CAP_CHECKPOINT_RESTORE" = 40,
}

/// The capability called `name`: any case, with or without `CAP_` (`net_admin`,
/// `CAP_NET_ADMIN`); `None` for a name Linux does not know.
pub fn capability(name: &str) -> Option<Capability> {
    let bare = match name.get(..4) {
        Some(prefix) if prefix.eq_ignore_ascii_case("CAP_") => &name[4..],
        _ => name,
    };
    CAPABILITIES
        .iter()
        .find(|c| c.name[4..].eq_ignore_ascii_case(bare))
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_the_kernels_in_order() {
        for (i, c) in CAPABILITIES.iter().enumerate() {
            assert_eq!(usize::from(c.number), i, "{}", c.name);
            assert!(c.name.starts_with("CAP_"), "{}", c.name);
            assert_eq!(c.name, c.name.to_ascii_uppercase());
        }
        assert_eq!(CAPABILITIES.last().unwrap().number, 40);
        assert_eq!(CAPABILITIES[12].name, "CAP_NET_ADMIN");
        assert_eq!(CAPABILITIES[21].name, "CAP_SYS_ADMIN");
        assert_eq!(CAPABILITIES[25].name, "CAP_SYS_TIME");
    }

    #[test]
    fn every_name_is_found_in_any_spelling() {
        for c in CAPABILITIES {
            let bare = &c.name[4..];
            for spelling in [
                c.name.to_string(),
                c.name.to_ascii_lowercase(),
                bare.to_string(),
                bare.to_ascii_lowercase(),
                format!("cap_{bare}"),
                format!("Cap_{}", bare.to_ascii_lowercase()),
            ] {
                assert_eq!(capability(&spelling), Some(c), "{spelling}");
            }
        }
    }

    #[test]
    fn unknown_names_are_not_found() {
        for name in [
            "",
            "CAP_",
            "cap",
            "CAP_NOPE",
            "NET_ADMINX",
            "CAP_CAP_NET_ADMIN",
            "ALL",
            " CAP_NET_ADMIN",
            "CAP_NÉT_ADMIN",
        ] {
            assert_eq!(capability(name), None, "{name:?}");
        }
    }
}
