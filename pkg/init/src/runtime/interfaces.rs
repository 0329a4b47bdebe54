//! `runtime.json` interfaces, LinuxKit's way: move a host link into the container's network
//! namespace, or create one there (a veth pair leaves its peer in the host's namespace).

use std::fs::File;
use std::os::fd::AsRawFd;

use nix::unistd::Pid;

use super::config::Interface;
use crate::netlink::{Route, create_message, move_message};

/// What to do for one interface.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<'a> {
    /// Move the host's link `name` into the container.
    Move(&'a str),
    /// Create link `name` of `kind` (with `peer` for a veth) in the host's namespace, then
    /// move `name` into the container.
    CreateAndMove {
        /// The link.
        name: &'a str,
        /// Its kind.
        kind: &'a str,
        /// A veth's peer.
        peer: Option<&'a str>,
    },
    /// Create link `name` of `kind` right in the container's namespace.
    CreateInside {
        /// The link.
        name: &'a str,
        /// Its kind.
        kind: &'a str,
    },
}

/// The step for `i` (a peer without `add` means a veth), or what is wrong with it.
pub fn step(i: &Interface) -> Result<Step<'_>, String> {
    if i.name.is_empty() {
        return Err("runtime.json interface without a name".into());
    }
    let name = i.name.as_str();
    let kind = if i.add.is_empty() && !i.peer.is_empty() {
        "veth"
    } else {
        i.add.as_str()
    };
    Ok(match kind {
        "" => Step::Move(name),
        "veth" if i.peer.is_empty() => {
            return Err(format!("interface {name}: a veth pair needs a peer"));
        }
        "veth" => Step::CreateAndMove {
            name,
            kind,
            peer: Some(&i.peer),
        },
        _ if i.create_in_root => Step::CreateAndMove {
            name,
            kind,
            peer: None,
        },
        _ => Step::CreateInside { name, kind },
    })
}

/// `e`, with a hint where the kernel does not know the link kind.
fn explain(e: nix::errno::Errno, kind: &str) -> String {
    if e == nix::errno::Errno::EOPNOTSUPP {
        format!("{e} (no {kind} support: is its kernel module in the image?)")
    } else {
        e.to_string()
    }
}

/// Set up `list` for the container `pid` through `host`, a socket in the host's network
/// namespace.
pub fn setup(host: &Route, pid: Pid, list: &[Interface]) -> Result<(), String> {
    let path = format!("/proc/{pid}/ns/net");
    let netns = File::open(&path).map_err(|e| format!("{path}: {e}"))?;
    let fd = netns.as_raw_fd();
    for i in list {
        match step(i)? {
            Step::Move(name) => host
                .request(&move_message(name, fd))
                .map_err(|e| format!("moving interface {name} into the container: {e}"))?,
            Step::CreateAndMove { name, kind, peer } => {
                host.request(&create_message(name, kind, peer, None))
                    .map_err(|e| {
                        let e = explain(e, kind);
                        match peer {
                            Some(p) => format!("creating {kind} {name} (peer {p}): {e}"),
                            None => format!("creating {kind} {name}: {e}"),
                        }
                    })?;
                host.request(&move_message(name, fd))
                    .map_err(|e| format!("moving interface {name} into the container: {e}"))?
            }
            Step::CreateInside { name, kind } => host
                .request(&create_message(name, kind, None, Some(fd)))
                .map_err(|e| {
                    let e = explain(e, kind);
                    format!("creating {kind} {name} in the container: {e}")
                })?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(name: &str, add: &str, peer: &str, create_in_root: bool) -> Interface {
        Interface {
            name: name.into(),
            add: add.into(),
            peer: peer.into(),
            create_in_root,
        }
    }

    #[test]
    fn steps_follow_linuxkit() {
        assert_eq!(step(&iface("eth1", "", "", false)), Ok(Step::Move("eth1")));
        let veth = Step::CreateAndMove {
            name: "c0",
            kind: "veth",
            peer: Some("h0"),
        };
        assert_eq!(step(&iface("c0", "veth", "h0", false)), Ok(veth));
        // A peer alone means a veth.
        assert!(matches!(
            step(&iface("c0", "", "h0", false)),
            Ok(Step::CreateAndMove { kind: "veth", .. })
        ));
        assert_eq!(
            step(&iface("wg0", "wireguard", "", true)),
            Ok(Step::CreateAndMove {
                name: "wg0",
                kind: "wireguard",
                peer: None
            })
        );
        assert_eq!(
            step(&iface("d0", "dummy", "", false)),
            Ok(Step::CreateInside {
                name: "d0",
                kind: "dummy"
            })
        );
        assert!(step(&iface("c0", "veth", "", false)).is_err());
        assert!(step(&iface("", "dummy", "", false)).is_err());
    }
}
