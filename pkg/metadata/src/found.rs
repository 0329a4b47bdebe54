//! What a source of metadata gave, whichever it was: the parts written under the config
//! directory.

/// Metadata from one source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    /// The provider's short name, also written to `provider` (`aws`, `gce`, `azure`,
    /// `openstack`, `cidata`).
    pub provider: &'static str,
    /// How it was reached: the protocol, or the device it was read from.
    pub via: String,
    /// The machine's name.
    pub hostname: Option<String>,
    /// SSH public keys, one line each.
    pub ssh_keys: Vec<String>,
    /// The user data, as given.
    pub userdata: Option<Vec<u8>>,
    /// Azure waits for the machine to report it is ready once the data is in place.
    pub report_ready: bool,
}

impl Found {
    /// `provider (via)`, for messages.
    pub fn describe(&self) -> String {
        format!("{} ({})", self.provider, self.via)
    }
}

/// A host name as given (white space and a trailing dot dropped), or `None` when it is empty
/// or holds anything but letters, digits, `-`, `_` and dots, or is longer than DNS allows.
pub fn clean_hostname(raw: &str) -> Option<String> {
    let name = raw.trim().trim_end_matches('.');
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name
            .split('.')
            .all(|label| !label.is_empty() && label.len() <= 63);
    ok.then(|| name.to_string())
}

/// What the kernel's host name is set to for `name`: all of it, or its first label when it
/// is longer than the 64 bytes the kernel holds.
pub fn kernel_hostname(name: &str) -> &str {
    if name.len() > 64 {
        name.split('.').next().unwrap_or(name)
    } else {
        name
    }
}

/// SSH keys as lines: surrounding white space dropped, empty lines and repeats left out.
pub fn key_lines<'a>(keys: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for key in keys.into_iter().flat_map(str::lines) {
        let key = key.trim();
        if !key.is_empty() && !key.starts_with('#') && !out.iter().any(|k| k == key) {
            out.push(key.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        assert_eq!(
            clean_hostname(" ip-10-1-2-3.ec2.internal\n").as_deref(),
            Some("ip-10-1-2-3.ec2.internal")
        );
        assert_eq!(clean_hostname("vm1.").as_deref(), Some("vm1"));
        for bad in [
            "",
            " \n",
            "a b",
            "a/b",
            "a..b",
            "x\0",
            &"a".repeat(64),
            &"a.".repeat(130),
        ] {
            assert_eq!(clean_hostname(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn long_names_are_cut_to_their_first_label_for_the_kernel() {
        let long = format!("web-1.{}.internal", "x".repeat(60));
        assert_eq!(kernel_hostname(&long), "web-1");
        let fits = format!("web-1.{}", "x".repeat(58));
        assert_eq!(kernel_hostname(&fits), fits);
    }

    #[test]
    fn keys_one_a_line_without_repeats() {
        let keys = key_lines([
            "ssh-ed25519 AAA a\n",
            "\n# comment\nssh-rsa BBB b\r\n",
            "ssh-ed25519 AAA a",
        ]);
        assert_eq!(keys, ["ssh-ed25519 AAA a", "ssh-rsa BBB b"]);
    }
}
