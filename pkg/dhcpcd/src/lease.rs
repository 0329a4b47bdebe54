//! What a DHCP lease asks of the machine: the address and prefix, the routes, the DNS servers
//! and search domains, the MTU, all checked and normalised from the options the server sent.

use std::fmt;
use std::net::Ipv4Addr;

use mozim::DhcpV4Lease;

/// A route to install for a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The destination network (`0.0.0.0` with prefix 0 for the default route).
    pub destination: Ipv4Addr,
    /// The destination's prefix length.
    pub prefix: u8,
    /// The next hop; `None` for a route to a network on the link itself.
    pub gateway: Option<Ipv4Addr>,
}

impl Route {
    /// Whether this is the default route.
    pub fn is_default(&self) -> bool {
        self.prefix == 0
    }
}

/// The configuration a lease gives one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    /// The address leased (yiaddr).
    pub address: Ipv4Addr,
    /// Its prefix length, from the subnet mask (option 1), else the address's class.
    pub prefix: u8,
    /// Routes: the classless static routes (option 121, or Microsoft's 249) when given, which
    /// RFC 3442 says replace the router option, else a default route via the first router
    /// (option 3).
    pub routes: Vec<Route>,
    /// DNS servers (option 6), in the server's order, without duplicates.
    pub dns: Vec<Ipv4Addr>,
    /// The domain search list (option 119), else the domain name (option 15).
    pub search: Vec<String>,
    /// The interface MTU (option 26), when given and at least 68 (RFC 791's minimum).
    pub mtu: Option<u16>,
    /// The lease time in seconds (option 51); `u32::MAX` is infinite.
    pub lease_secs: u32,
}

/// Whether `addr` is in `network/prefix`.
pub fn in_subnet(addr: Ipv4Addr, network: Ipv4Addr, prefix: u8) -> bool {
    let mask = prefix_mask(prefix);
    u32::from(addr) & mask == u32::from(network) & mask
}

fn prefix_mask(prefix: u8) -> u32 {
    match prefix {
        0 => 0,
        p => u32::MAX << (32 - u32::from(p.min(32))),
    }
}

/// The prefix length of a contiguous subnet mask, `None` for a non-contiguous one.
fn mask_prefix(mask: Ipv4Addr) -> Option<u8> {
    let bits = u32::from(mask);
    let ones = bits.leading_ones();
    (bits.count_ones() == ones).then_some(ones as u8)
}

/// The classful prefix of an address, for a lease without a subnet mask (RFC 2131 leaves the
/// default to the client; dhcpcd and ISC dhclient use the class).
fn classful_prefix(addr: Ipv4Addr) -> u8 {
    match addr.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        _ => 24,
    }
}

/// Whether a name is acceptable as a DNS search domain (letters, digits, `-`, `_`, dots):
/// anything else could break or inject lines into resolv.conf.
fn valid_domain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn push_unique<T: PartialEq>(list: &mut Vec<T>, item: T) {
    if !list.contains(&item) {
        list.push(item);
    }
}

impl LeaseInfo {
    /// The configuration a lease asks for, or why it cannot be used.
    pub fn from_lease(lease: &DhcpV4Lease) -> Result<Self, String> {
        let address = lease.yiaddr;
        if address.is_unspecified() || address.is_broadcast() || address.is_multicast() {
            return Err(format!("the server offered the unusable address {address}"));
        }
        let prefix = if lease.subnet_mask.is_unspecified() {
            classful_prefix(address)
        } else {
            match mask_prefix(lease.subnet_mask) {
                Some(p) => p,
                None => {
                    return Err(format!(
                        "the server sent the non-contiguous subnet mask {}",
                        lease.subnet_mask
                    ));
                }
            }
        };

        let usable_router =
            |r: &Ipv4Addr| !r.is_unspecified() && !r.is_broadcast() && *r != address;
        let mut routes = Vec::new();
        match &lease.classless_routes {
            Some(classless) if !classless.is_empty() => {
                for r in classless {
                    let gateway = (!r.router.is_unspecified()).then_some(r.router);
                    if gateway.is_some_and(|g| !usable_router(&g)) {
                        continue;
                    }
                    push_unique(
                        &mut routes,
                        Route {
                            destination: r.destination,
                            prefix: r.prefix_length.min(32),
                            gateway,
                        },
                    );
                }
            }
            _ => {
                if let Some(router) = lease.gateways.iter().flatten().find(|r| usable_router(r)) {
                    routes.push(Route {
                        destination: Ipv4Addr::UNSPECIFIED,
                        prefix: 0,
                        gateway: Some(*router),
                    });
                }
            }
        }

        let mut dns = Vec::new();
        for server in lease.dns_srvs.iter().flatten() {
            if !server.is_unspecified() && !server.is_broadcast() {
                push_unique(&mut dns, *server);
            }
        }

        let mut search = Vec::new();
        let names: Vec<&str> = match &lease.domain_search {
            Some(list) if !list.is_empty() => list.iter().map(String::as_str).collect(),
            // Some servers put several names, separated by spaces, in option 15.
            _ => lease
                .domain_name
                .as_deref()
                .map(|d| d.split_whitespace().collect())
                .unwrap_or_default(),
        };
        for name in names {
            let name = name.trim_end_matches('.');
            if valid_domain(name) {
                push_unique(&mut search, name.to_string());
            }
        }

        Ok(LeaseInfo {
            address,
            prefix,
            routes,
            dns,
            search,
            mtu: lease.mtu.filter(|m| *m >= 68),
            lease_secs: lease.lease_time_sec,
        })
    }

    /// The next hop of the default route, if the lease gives one.
    pub fn default_gateway(&self) -> Option<Ipv4Addr> {
        self.routes
            .iter()
            .find(|r| r.is_default())
            .and_then(|r| r.gateway)
    }
}

/// The log line: `leased 10.0.2.15/24 via 10.0.2.2 dns 10.0.2.3 (lease 86400s)`.
impl fmt::Display for LeaseInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "leased {}/{}", self.address, self.prefix)?;
        if let Some(gateway) = self.default_gateway() {
            write!(f, " via {gateway}")?;
        }
        let others = self.routes.iter().filter(|r| !r.is_default()).count();
        if others > 0 {
            write!(f, " +{others} route{}", if others == 1 { "" } else { "s" })?;
        }
        if !self.dns.is_empty() {
            let dns: Vec<String> = self.dns.iter().map(Ipv4Addr::to_string).collect();
            write!(f, " dns {}", dns.join(","))?;
        }
        if !self.search.is_empty() {
            write!(f, " search {}", self.search.join(","))?;
        }
        if let Some(mtu) = self.mtu {
            write!(f, " mtu {mtu}")?;
        }
        if self.lease_secs == u32::MAX {
            write!(f, " (lease infinite)")
        } else {
            write!(f, " (lease {}s)", self.lease_secs)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mozim::DhcpV4ClasslessRoute;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    /// A lease like QEMU's user networking gives.
    fn slirp_lease() -> DhcpV4Lease {
        let mut lease = DhcpV4Lease::default();
        lease.yiaddr = ip("10.0.2.15");
        lease.subnet_mask = ip("255.255.255.0");
        lease.gateways = Some(vec![ip("10.0.2.2")]);
        lease.dns_srvs = Some(vec![ip("10.0.2.3")]);
        lease.lease_time_sec = 86400;
        lease
    }

    #[test]
    fn slirp_lease_summary() {
        let info = LeaseInfo::from_lease(&slirp_lease()).unwrap();
        assert_eq!(info.address, ip("10.0.2.15"));
        assert_eq!(info.prefix, 24);
        assert_eq!(info.default_gateway(), Some(ip("10.0.2.2")));
        assert_eq!(info.dns, vec![ip("10.0.2.3")]);
        assert!(info.search.is_empty());
        assert_eq!(info.mtu, None);
        assert_eq!(
            info.to_string(),
            "leased 10.0.2.15/24 via 10.0.2.2 dns 10.0.2.3 (lease 86400s)"
        );
    }

    #[test]
    fn search_mtu_and_duplicates() {
        let mut lease = slirp_lease();
        lease.dns_srvs = Some(vec![
            ip("1.1.1.1"),
            ip("0.0.0.0"),
            ip("1.1.1.1"),
            ip("8.8.8.8"),
        ]);
        lease.domain_name = Some("corp.example lab.example.".into());
        lease.mtu = Some(1400);
        lease.lease_time_sec = u32::MAX;
        let info = LeaseInfo::from_lease(&lease).unwrap();
        assert_eq!(info.dns, vec![ip("1.1.1.1"), ip("8.8.8.8")]);
        assert_eq!(info.search, vec!["corp.example", "lab.example"]);
        assert_eq!(info.mtu, Some(1400));
        assert_eq!(
            info.to_string(),
            "leased 10.0.2.15/24 via 10.0.2.2 dns 1.1.1.1,8.8.8.8 \
             search corp.example,lab.example mtu 1400 (lease infinite)"
        );
    }

    #[test]
    fn domain_search_wins_over_domain_name_and_bad_names_are_dropped() {
        let mut lease = slirp_lease();
        lease.domain_name = Some("ignored.example".into());
        lease.domain_search = Some(vec![
            "a.example".into(),
            "bad name\nnameserver 6.6.6.6".into(),
            "b.example".into(),
        ]);
        let info = LeaseInfo::from_lease(&lease).unwrap();
        assert_eq!(info.search, vec!["a.example", "b.example"]);
    }

    #[test]
    fn classless_routes_replace_the_router_option() {
        let mut lease = slirp_lease();
        lease.classless_routes = Some(vec![
            DhcpV4ClasslessRoute {
                destination: ip("192.168.50.0"),
                prefix_length: 24,
                router: ip("10.0.2.9"),
            },
            DhcpV4ClasslessRoute {
                destination: ip("0.0.0.0"),
                prefix_length: 0,
                router: ip("10.0.2.1"),
            },
            DhcpV4ClasslessRoute {
                destination: ip("10.9.0.0"),
                prefix_length: 16,
                router: ip("0.0.0.0"),
            },
        ]);
        let info = LeaseInfo::from_lease(&lease).unwrap();
        assert_eq!(info.default_gateway(), Some(ip("10.0.2.1")));
        assert_eq!(info.routes.len(), 3);
        assert_eq!(info.routes[2].gateway, None);
        assert!(info.to_string().contains("via 10.0.2.1 +2 routes"));
    }

    #[test]
    fn no_router_no_dns() {
        let mut lease = slirp_lease();
        lease.gateways = None;
        lease.dns_srvs = None;
        let info = LeaseInfo::from_lease(&lease).unwrap();
        assert!(info.routes.is_empty());
        assert_eq!(info.to_string(), "leased 10.0.2.15/24 (lease 86400s)");
    }

    #[test]
    fn masks() {
        let mut lease = slirp_lease();
        lease.subnet_mask = ip("0.0.0.0");
        assert_eq!(LeaseInfo::from_lease(&lease).unwrap().prefix, 8);
        lease.yiaddr = ip("192.168.1.7");
        assert_eq!(LeaseInfo::from_lease(&lease).unwrap().prefix, 24);
        lease.subnet_mask = ip("255.255.255.255");
        assert_eq!(LeaseInfo::from_lease(&lease).unwrap().prefix, 32);
        lease.subnet_mask = ip("255.0.255.0");
        let err = LeaseInfo::from_lease(&lease).unwrap_err();
        assert!(err.contains("non-contiguous"), "{err}");
        lease.subnet_mask = ip("255.255.0.0");
        lease.yiaddr = ip("0.0.0.0");
        assert!(LeaseInfo::from_lease(&lease).is_err());
    }

    #[test]
    fn subnets() {
        assert!(in_subnet(ip("10.0.2.2"), ip("10.0.2.15"), 24));
        assert!(!in_subnet(ip("10.0.3.2"), ip("10.0.2.15"), 24));
        assert!(in_subnet(ip("1.2.3.4"), ip("10.0.2.15"), 0));
        assert!(!in_subnet(ip("10.0.2.16"), ip("10.0.2.15"), 32));
    }
}
