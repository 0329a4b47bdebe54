//! The few rtnetlink requests the system needs, built by hand: bring a link up, move a link
//! into another network namespace, create a link (a veth pair or any kind the kernel knows).

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, sendto,
    socket,
};

const RTM_NEWLINK: u16 = 16;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const IFF_UP: u32 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;

/// An `RTM_NEWLINK` request under construction.
pub struct LinkMessage {
    buf: Vec<u8>,
    /// Offsets of the nested attributes still open.
    open: Vec<usize>,
}

impl LinkMessage {
    /// A request with the given netlink flags (besides `NLM_F_REQUEST | NLM_F_ACK`) for link
    /// `index` (0: by name), setting `flags` among the `change` bits.
    pub fn new(extra: u16, index: u32, flags: u32, change: u32) -> LinkMessage {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_len, set by finish
        buf.extend_from_slice(&RTM_NEWLINK.to_ne_bytes());
        buf.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK | extra).to_ne_bytes());
        buf.extend_from_slice(&1u32.to_ne_bytes()); // nlmsg_seq
        buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid
        ifinfo(&mut buf, index, flags, change);
        LinkMessage {
            buf,
            open: Vec::new(),
        }
    }

    /// Append attribute `kind` with `value`, padded to 4 bytes.
    pub fn attr(mut self, kind: u16, value: &[u8]) -> LinkMessage {
        let len = 4 + value.len();
        self.buf
            .extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(value);
        self.pad();
        self
    }

    /// Append a NUL-terminated string attribute.
    pub fn string(self, kind: u16, value: &str) -> LinkMessage {
        let mut v = value.as_bytes().to_vec();
        v.push(0);
        self.attr(kind, &v)
    }

    /// Open a nested attribute; [`LinkMessage::end`] closes it.
    pub fn nest(mut self, kind: u16) -> LinkMessage {
        self.open.push(self.buf.len());
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self
    }

    /// Append raw bytes inside the open nest (a peer's `ifinfomsg`).
    fn raw(mut self, f: impl FnOnce(&mut Vec<u8>)) -> LinkMessage {
        f(&mut self.buf);
        self
    }

    /// Close the innermost nested attribute.
    pub fn end(mut self) -> LinkMessage {
        if let Some(start) = self.open.pop() {
            let len = u16::try_from(self.buf.len() - start).unwrap_or(u16::MAX);
            self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        }
        self
    }

    /// The finished message.
    pub fn finish(mut self) -> Vec<u8> {
        while !self.open.is_empty() {
            self = self.end();
        }
        let len = u32::try_from(self.buf.len()).unwrap_or(u32::MAX);
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }
}

fn ifinfo(buf: &mut Vec<u8>, index: u32, flags: u32, change: u32) {
    buf.extend_from_slice(&[0, 0]); // ifi_family, pad
    buf.extend_from_slice(&0u16.to_ne_bytes()); // ifi_type
    buf.extend_from_slice(&index.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&change.to_ne_bytes());
}

/// The request setting `IFF_UP` on link `index`.
pub fn link_up_message(index: u32) -> Vec<u8> {
    LinkMessage::new(0, index, IFF_UP, IFF_UP).finish()
}

/// The request moving link `name` into the network namespace open as `netns`.
pub fn move_message(name: &str, netns: RawFd) -> Vec<u8> {
    LinkMessage::new(0, 0, 0, 0)
        .string(IFLA_IFNAME, name)
        .attr(IFLA_NET_NS_FD, &netns.to_ne_bytes())
        .finish()
}

/// The request creating link `name` of `kind` (a veth pair with `peer`), inside the
/// namespace `netns` when given (a veth's peer stays where the request is made).
pub fn create_message(name: &str, kind: &str, peer: Option<&str>, netns: Option<RawFd>) -> Vec<u8> {
    let mut m = LinkMessage::new(NLM_F_CREATE | NLM_F_EXCL, 0, 0, 0).string(IFLA_IFNAME, name);
    if let Some(fd) = netns {
        m = m.attr(IFLA_NET_NS_FD, &fd.to_ne_bytes());
    }
    m = m.nest(IFLA_LINKINFO).string(IFLA_INFO_KIND, kind);
    if let Some(peer) = peer {
        m = m
            .nest(IFLA_INFO_DATA)
            .nest(VETH_INFO_PEER)
            .raw(|b| ifinfo(b, 0, 0, 0))
            .string(IFLA_IFNAME, peer)
            .end()
            .end();
    }
    m.end().finish()
}

/// An rtnetlink socket, talking to the network namespace it was opened in.
pub struct Route {
    fd: OwnedFd,
}

impl Route {
    /// Open a socket in the caller's network namespace.
    pub fn open() -> Result<Route, String> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )
        .map_err(|e| format!("netlink socket: {e}"))?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0)).map_err(|e| format!("netlink bind: {e}"))?;
        Ok(Route { fd })
    }

    /// Send `message` and wait for the kernel's acknowledgement.
    pub fn request(&self, message: &[u8]) -> Result<(), Errno> {
        sendto(
            self.fd.as_raw_fd(),
            message,
            &NetlinkAddr::new(0, 0),
            MsgFlags::empty(),
        )?;
        let mut buf = [0u8; 1024];
        let n = recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty())?;
        // An NLMSG_ERROR whose code is 0 is the acknowledgement.
        let kind = buf.get(4..6).map(|b| u16::from_ne_bytes([b[0], b[1]]));
        match (kind, buf.get(16..20)) {
            (Some(NLMSG_ERROR), Some(c)) if n >= 20 => {
                let code = i32::from_ne_bytes([c[0], c[1], c[2], c[3]]);
                if code == 0 {
                    Ok(())
                } else {
                    Err(Errno::from_raw(-code))
                }
            }
            _ => Err(Errno::EPROTO),
        }
    }
}

/// Bring the interface `name` up.
pub fn link_up(name: &str) -> Result<(), String> {
    let index = nix::net::if_::if_nametoindex(name).map_err(|e| format!("{name}: {e}"))?;
    Route::open()?
        .request(&link_up_message(index))
        .map_err(|e| format!("bringing {name} up: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `struct nlmsghdr` and `struct ifinfomsg` are 16 bytes each.
    const HEADER: usize = 16;

    fn u16_at(m: &[u8], at: usize) -> u16 {
        u16::from_ne_bytes([m[at], m[at + 1]])
    }

    #[test]
    fn link_up_layout() {
        let m = link_up_message(7);
        assert_eq!(m.len(), 32);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 32);
        assert_eq!(u16_at(&m, 4), RTM_NEWLINK);
        assert_eq!(i32::from_ne_bytes(m[20..24].try_into().unwrap()), 7);
        assert_eq!(u32::from_ne_bytes(m[24..28].try_into().unwrap()), IFF_UP);
    }

    #[test]
    fn veth_request_nests_the_peer() {
        let m = create_message("vc", "veth", Some("vh"), Some(9));
        let at = 2 * HEADER;
        // IFLA_IFNAME "vc\0" padded to 8, then IFLA_NET_NS_FD.
        assert_eq!((u16_at(&m, at), u16_at(&m, at + 2)), (7, IFLA_IFNAME));
        assert_eq!(&m[at + 4..at + 7], b"vc\0");
        assert_eq!(
            (u16_at(&m, at + 8), u16_at(&m, at + 10)),
            (8, IFLA_NET_NS_FD)
        );
        let info = at + 16;
        assert_eq!(u16_at(&m, info + 2), IFLA_LINKINFO);
        assert_eq!(usize::from(u16_at(&m, info)), m.len() - info);
        // kind "veth\0" (9, padded to 12), then the data nest holding the peer nest.
        assert_eq!(
            (u16_at(&m, info + 4), u16_at(&m, info + 6)),
            (9, IFLA_INFO_KIND)
        );
        let data = info + 4 + 12;
        assert_eq!(u16_at(&m, data + 2), IFLA_INFO_DATA);
        assert_eq!(u16_at(&m, data + 6), VETH_INFO_PEER);
        // The peer: its ifinfomsg, then its name.
        let peer_name = data + 8 + HEADER;
        assert_eq!(u16_at(&m, peer_name + 2), IFLA_IFNAME);
        assert_eq!(&m[peer_name + 4..peer_name + 7], b"vh\0");
        assert_eq!(
            u32::from_ne_bytes(m[0..4].try_into().unwrap()) as usize,
            m.len()
        );
    }

    #[test]
    fn move_names_the_link_and_namespace() {
        let m = move_message("eth1", 5);
        assert_eq!(m.len(), 2 * HEADER + 12 + 8);
        assert_eq!(&m[2 * HEADER + 4..2 * HEADER + 9], b"eth1\0");
        assert_eq!(u16_at(&m, 2 * HEADER + 14), IFLA_NET_NS_FD);
    }
}
