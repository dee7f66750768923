//! Network bring-up over rtnetlink: loopback, then one IPv4 interface (static
//! or from a DHCP lease, see `dhcp`).
//!
//! Netlink needs no `unsafe` and no helper binaries: each change is one
//! request message the kernel acknowledges, so every failure comes back with
//! the errno of the exact step (link up, address, default route). Messages
//! use native byte order, as the kernel expects (`<linux/netlink.h>`,
//! `<linux/rtnetlink.h>`).

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{
    bind, recv, send, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol,
    SockType,
};

/// A static IPv4 configuration for one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4Config {
    /// Interface name, e.g. `eth0`.
    pub interface: String,
    /// Address of the interface.
    pub address: Ipv4Addr,
    /// Prefix length (0..=32).
    pub prefix_len: u8,
    /// Default gateway, if any.
    pub gateway: Option<Ipv4Addr>,
}

/// A failed network step.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The netlink socket could not be opened.
    #[error("netlink socket: {0}")]
    Socket(Errno),
    /// No interface by that name.
    #[error("interface {name}: {errno}")]
    UnknownInterface {
        /// Interface name.
        name: String,
        /// Error from if_nametoindex.
        errno: Errno,
    },
    /// The kernel refused a request.
    #[error("{step}: {errno}")]
    Kernel {
        /// Which step failed, e.g. "eth0: add address 10.0.2.15/24".
        step: String,
        /// The errno in the kernel's acknowledgement.
        errno: Errno,
    },
    /// A prefix length over 32.
    #[error("prefix length {0} is not in 0..=32")]
    PrefixLength(u8),
}

// Message types and flags (<linux/netlink.h>, <linux/rtnetlink.h>).
const NLMSG_ERROR: u16 = 2;
const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_HDRLEN: usize = 16;
const AF_INET: u8 = 2;
const IFF_UP: u32 = 0x1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RTN_UNICAST: u8 = 1;

/// Bring `lo` up (the kernel then assigns 127.0.0.1/8 itself).
pub fn bring_up_loopback() -> Result<(), NetError> {
    set_link_up("lo")
}

/// Bring an interface up without addressing it (the DHCP client needs the
/// link before it has an address).
pub fn set_link_up(name: &str) -> Result<(), NetError> {
    let mut rtnl = Rtnl::open()?;
    let index = interface_index(name)?;
    rtnl.call(
        &format!("{name}: set link up"),
        RTM_NEWLINK,
        0,
        &link_up(index),
    )
}

/// Bring the interface up, assign the address, and add the default route.
/// Re-applying the same configuration succeeds (create-or-replace).
pub fn configure(config: &Ipv4Config) -> Result<(), NetError> {
    if config.prefix_len > 32 {
        return Err(NetError::PrefixLength(config.prefix_len));
    }
    let mut rtnl = Rtnl::open()?;
    let name = &config.interface;
    let index = interface_index(name)?;
    rtnl.call(
        &format!("{name}: set link up"),
        RTM_NEWLINK,
        0,
        &link_up(index),
    )?;
    rtnl.call(
        &format!(
            "{name}: add address {}/{}",
            config.address, config.prefix_len
        ),
        RTM_NEWADDR,
        NLM_F_CREATE | NLM_F_REPLACE,
        &add_address(index, config.address, config.prefix_len),
    )?;
    if let Some(gateway) = config.gateway {
        rtnl.call(
            &format!("{name}: add default route via {gateway}"),
            RTM_NEWROUTE,
            NLM_F_CREATE | NLM_F_REPLACE,
            &default_route(index, gateway),
        )?;
    }
    Ok(())
}

fn interface_index(name: &str) -> Result<u32, NetError> {
    nix::net::if_::if_nametoindex(name).map_err(|errno| NetError::UnknownInterface {
        name: name.into(),
        errno,
    })
}

/// `struct ifinfomsg` setting IFF_UP.
fn link_up(index: u32) -> Vec<u8> {
    let mut body = vec![0u8, 0, 0, 0]; // AF_UNSPEC, pad, ifi_type
    body.extend_from_slice(&index.to_ne_bytes());
    body.extend_from_slice(&IFF_UP.to_ne_bytes()); // ifi_flags
    body.extend_from_slice(&IFF_UP.to_ne_bytes()); // ifi_change: only IFF_UP
    body
}

/// `struct ifaddrmsg` + IFA_LOCAL + IFA_ADDRESS.
fn add_address(index: u32, address: Ipv4Addr, prefix_len: u8) -> Vec<u8> {
    let mut body = vec![AF_INET, prefix_len, 0, RT_SCOPE_UNIVERSE];
    body.extend_from_slice(&index.to_ne_bytes());
    push_attr(&mut body, IFA_LOCAL, &address.octets());
    push_attr(&mut body, IFA_ADDRESS, &address.octets());
    body
}

/// `struct rtmsg` for 0.0.0.0/0 + RTA_GATEWAY + RTA_OIF.
fn default_route(index: u32, gateway: Ipv4Addr) -> Vec<u8> {
    let mut body = vec![
        AF_INET,
        0,
        0,
        0,
        RT_TABLE_MAIN,
        RTPROT_BOOT,
        RT_SCOPE_UNIVERSE,
        RTN_UNICAST,
    ];
    body.extend_from_slice(&0u32.to_ne_bytes()); // rtm_flags
    push_attr(&mut body, RTA_GATEWAY, &gateway.octets());
    push_attr(&mut body, RTA_OIF, &index.to_ne_bytes());
    body
}

/// Append a `struct rtattr` (u16 length, u16 type, data) padded to 4 bytes.
fn push_attr(buf: &mut Vec<u8>, kind: u16, data: &[u8]) {
    let len = 4 + data.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(data);
    buf.resize(buf.len().next_multiple_of(4), 0);
}

/// A whole netlink message: `struct nlmsghdr` + body.
fn message(kind: u16, flags: u16, seq: u32, body: &[u8]) -> Vec<u8> {
    let len = (NLMSG_HDRLEN + body.len()) as u32;
    let mut msg = Vec::with_capacity(len as usize);
    msg.extend_from_slice(&len.to_ne_bytes());
    msg.extend_from_slice(&kind.to_ne_bytes());
    msg.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    msg.extend_from_slice(&seq.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes()); // port id: kernel fills it in
    msg.extend_from_slice(body);
    msg
}

/// Find the acknowledgement for `seq` in a datagram: `Some(0)` success,
/// `Some(-errno)` refusal, `None` if this datagram does not hold it.
fn find_ack(datagram: &[u8], seq: u32) -> Option<i32> {
    let mut rest = datagram;
    while rest.len() >= NLMSG_HDRLEN {
        let u32_at = |b: &[u8], at: usize| -> Option<u32> {
            Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
        };
        let len = u32_at(rest, 0)? as usize;
        let kind = u16::from_ne_bytes(rest.get(4..6)?.try_into().ok()?);
        let msg_seq = u32_at(rest, 8)?;
        if len < NLMSG_HDRLEN || len > rest.len() {
            return None;
        }
        if kind == NLMSG_ERROR && msg_seq == seq {
            return Some(u32_at(rest, NLMSG_HDRLEN)? as i32);
        }
        rest = rest.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
    None
}

struct Rtnl {
    fd: OwnedFd,
    seq: u32,
}

impl Rtnl {
    fn open() -> Result<Self, NetError> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )
        .map_err(NetError::Socket)?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0)).map_err(NetError::Socket)?;
        Ok(Rtnl { fd, seq: 0 })
    }

    /// Send one request and wait for its acknowledgement.
    fn call(&mut self, step: &str, kind: u16, flags: u16, body: &[u8]) -> Result<(), NetError> {
        self.seq = self.seq.wrapping_add(1);
        let fail = |errno| NetError::Kernel {
            step: step.into(),
            errno,
        };
        send(
            self.fd.as_raw_fd(),
            &message(kind, flags, self.seq, body),
            MsgFlags::empty(),
        )
        .map_err(fail)?;
        let mut buf = vec![0u8; 8192];
        loop {
            let n = recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty()).map_err(fail)?;
            match find_ack(buf.get(..n).unwrap_or_default(), self.seq) {
                Some(0) => return Ok(()),
                Some(code) => return Err(fail(Errno::from_raw(code.saturating_neg()))),
                None => continue,
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Layout check against iproute2's `ip address add 10.0.2.15/24 dev <3>`
    /// request: ifaddrmsg then two 8-byte attributes.
    #[test]
    fn address_request_layout() {
        let body = add_address(3, Ipv4Addr::new(10, 0, 2, 15), 24);
        assert_eq!(
            body,
            [
                2, 24, 0, 0, 3, 0, 0, 0, // ifaddrmsg: AF_INET, /24, flags, scope, index 3
                8, 0, 2, 0, 10, 0, 2, 15, // IFA_LOCAL
                8, 0, 1, 0, 10, 0, 2, 15, // IFA_ADDRESS
            ]
        );
        let msg = message(RTM_NEWADDR, NLM_F_CREATE, 7, &body);
        assert_eq!(msg.len(), 16 + 24);
        assert_eq!(&msg[0..4], &40u32.to_ne_bytes());
        assert_eq!(&msg[6..8], &(0x400u16 | 1 | 4).to_ne_bytes());
    }

    #[test]
    fn ack_parsing_finds_the_right_sequence_and_survives_garbage() {
        let mut ack = Vec::new();
        for (seq, err) in [(1u32, 0i32), (2, -17)] {
            ack.extend_from_slice(&36u32.to_ne_bytes());
            ack.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
            ack.extend_from_slice(&0u16.to_ne_bytes());
            ack.extend_from_slice(&seq.to_ne_bytes());
            ack.extend_from_slice(&0u32.to_ne_bytes());
            ack.extend_from_slice(&err.to_ne_bytes());
            ack.extend_from_slice(&[0u8; 16]);
        }
        assert_eq!(find_ack(&ack, 1), Some(0));
        assert_eq!(find_ack(&ack, 2), Some(-17));
        assert_eq!(find_ack(&ack, 3), None);
        assert_eq!(find_ack(&ack[..20], 2), None);
        assert_eq!(find_ack(&[0xff; 64], 1), None);
        assert_eq!(find_ack(&[0; 64], 1), None);
    }

    /// Run iproute2's `ip ARGS` and return its output (tests only).
    pub(crate) fn ip(args: &str) -> String {
        let out = std::process::Command::new("ip")
            .args(args.split(' '))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ip {args}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Configure a veth "eth0" in a private network namespace (this test's
    /// thread only) and check the result with iproute2.
    #[test]
    fn configures_interface_in_a_private_namespace() {
        std::thread::spawn(|| {
            if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET) {
                assert_eq!(e, Errno::EPERM, "unshare");
                ee_testkit::unavailable(
                    "net: private network namespace",
                    "unshare(CLONE_NEWNET) needs CAP_SYS_ADMIN",
                );
                return;
            }
            bring_up_loopback().unwrap();
            assert!(ip("-o -4 addr show dev lo").contains("127.0.0.1/8"));

            ip("link add eth0 type veth peer name eth1");
            ip("link set eth1 up");
            let config = Ipv4Config {
                interface: "eth0".into(),
                address: Ipv4Addr::new(10, 0, 2, 15),
                prefix_len: 24,
                gateway: Some(Ipv4Addr::new(10, 0, 2, 2)),
            };
            configure(&config).unwrap();
            configure(&config).expect("re-applying is idempotent");
            assert!(ip("-o -4 addr show dev eth0").contains("inet 10.0.2.15/24"));
            assert!(ip("-o link show dev eth0").contains("UP"));
            assert!(ip("-4 route show default").contains("default via 10.0.2.2 dev eth0"));

            let missing = Ipv4Config {
                interface: "eth9".into(),
                ..config.clone()
            };
            let err = configure(&missing).unwrap_err();
            assert!(err.to_string().starts_with("interface eth9"), "{err}");

            let unreachable = Ipv4Config {
                gateway: Some(Ipv4Addr::new(192, 168, 9, 1)),
                ..config
            };
            let err = configure(&unreachable).unwrap_err().to_string();
            assert!(err.contains("add default route via 192.168.9.1"), "{err}");
        })
        .join()
        .unwrap();
    }
}
