//! resolv.conf from the leases: rendered from every configured interface's DNS servers and
//! search domains, and written atomically (a temporary file in the same folder, renamed).

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;

use crate::lease::LeaseInfo;

/// Where resolv.conf goes by default (the image links /etc/resolv.conf here, as LinuxKit's do).
pub const DEFAULT_PATH: &str = "/run/resolvconf/resolv.conf";

/// The resolv.conf for the leases of the interfaces, in their order: the search domains and
/// the name servers of all, each once. `None` when no lease names a server or a domain (the
/// file is then left as it is).
pub fn render(leases: &[(String, LeaseInfo)]) -> Option<String> {
    let mut servers: Vec<Ipv4Addr> = Vec::new();
    let mut search: Vec<&str> = Vec::new();
    let mut from: Vec<&str> = Vec::new();
    for (iface, lease) in leases {
        if lease.dns.is_empty() && lease.search.is_empty() {
            continue;
        }
        from.push(iface);
        for s in &lease.dns {
            if !servers.contains(s) {
                servers.push(*s);
            }
        }
        for d in &lease.search {
            if !search.contains(&d.as_str()) {
                search.push(d);
            }
        }
    }
    if from.is_empty() {
        return None;
    }
    let mut out = format!(
        "# Written by dhcpcd from the DHCP lease of {}\n",
        from.join(", ")
    );
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    for s in servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    Some(out)
}

/// Write `contents` to `path` atomically, creating its folder: readers see the old file or the
/// new one, never a part.
pub fn write_atomic(path: &Path, contents: &str) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "resolv.conf".into());
    let tmp = dir.join(format!(".{name}.dhcpcd-{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(dns: &[&str], search: &[&str]) -> LeaseInfo {
        LeaseInfo {
            address: "10.0.2.15".parse().unwrap(),
            prefix: 24,
            routes: Vec::new(),
            dns: dns.iter().map(|s| s.parse().unwrap()).collect(),
            search: search.iter().map(|s| s.to_string()).collect(),
            mtu: None,
            lease_secs: 3600,
        }
    }

    #[test]
    fn one_interface() {
        let text = render(&[("eth0".into(), lease(&["10.0.2.3"], &[]))]).unwrap();
        assert_eq!(
            text,
            "# Written by dhcpcd from the DHCP lease of eth0\nnameserver 10.0.2.3\n"
        );
    }

    #[test]
    fn interfaces_merge_in_order_without_duplicates() {
        let text = render(&[
            (
                "eth0".into(),
                lease(&["10.0.0.1", "10.0.0.2"], &["a.example"]),
            ),
            ("eth1".into(), lease(&[], &[])),
            (
                "eth2".into(),
                lease(&["10.0.0.2", "10.1.0.1"], &["b.example", "a.example"]),
            ),
        ])
        .unwrap();
        assert_eq!(
            text,
            "# Written by dhcpcd from the DHCP lease of eth0, eth2\n\
             search a.example b.example\n\
             nameserver 10.0.0.1\n\
             nameserver 10.0.0.2\n\
             nameserver 10.1.0.1\n"
        );
    }

    #[test]
    fn nothing_to_write() {
        assert_eq!(render(&[("eth0".into(), lease(&[], &[]))]), None);
        assert_eq!(render(&[]), None);
    }

    #[test]
    fn search_only() {
        let text = render(&[("eth0".into(), lease(&[], &["lan"]))]).unwrap();
        assert!(text.ends_with("\nsearch lan\n"), "{text}");
    }

    #[test]
    fn atomic_write_creates_the_folder_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolvconf/resolv.conf");
        write_atomic(&path, "one\n").unwrap();
        write_atomic(&path, "two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("resolv.conf")]);
    }
}
