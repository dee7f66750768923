//! A minimal DHCPv4 client (RFC 2131, options from RFC 2132) for one
//! interface at boot: DISCOVER → OFFER → REQUEST → ACK, nothing else.
//!
//! The exchange runs over an ordinary UDP socket bound to `0.0.0.0:68` on the
//! interface (SO_BINDTODEVICE) with SO_BROADCAST: Linux routes a datagram to
//! 255.255.255.255 out of the bound device even before the interface has an
//! address, with source 0.0.0.0. Requests set the BROADCAST flag, so servers
//! answer to 255.255.255.255, which the kernel delivers to the socket while
//! the interface still has no address (a unicast reply to the offered address
//! would be dropped as not local).
//!
//! Replies are untrusted network input: every field is bounds-checked, and a
//! reply that is malformed, not for this transaction (xid, hardware address)
//! or not what the current step expects is ignored; the reason of the last
//! one is reported if no lease is obtained. No renewal: the lease is applied
//! once and kept (see README.md, "Network").

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::socket::{setsockopt, sockopt};

use crate::net::Ipv4Config;
use crate::say;

/// Client port (RFC 2131 section 4.1).
const CLIENT_PORT: u16 = 68;
/// Server port.
const SERVER_PORT: u16 = 67;
/// Fixed BOOTP header before the magic cookie: op .. file.
const HEADER_LEN: usize = 236;
/// RFC 2132 section 2.
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// BOOTP's minimum message size (RFC 1542 section 2.1); some relays drop
/// shorter ones.
const MIN_MESSAGE_LEN: usize = 300;
/// Larger than any reply we accept: servers keep to 576 bytes unless the
/// client advertises more (option 57, not sent).
const RECEIVE_BUFFER: usize = 1500;
const OP_REQUEST: u8 = 1;
const OP_REPLY: u8 = 2;
const HTYPE_ETHERNET: u8 = 1;
const HLEN_ETHERNET: u8 = 6;
/// Ask for broadcast replies: we cannot receive unicast before the address
/// is configured.
const FLAG_BROADCAST: u16 = 0x8000;

// Option codes (RFC 2132).
const OPT_PAD: u8 = 0;
const OPT_SUBNET_MASK: u8 = 1;
const OPT_ROUTER: u8 = 3;
const OPT_DNS: u8 = 6;
const OPT_REQUESTED_ADDRESS: u8 = 50;
const OPT_LEASE_TIME: u8 = 51;
const OPT_MESSAGE_TYPE: u8 = 53;
const OPT_SERVER_ID: u8 = 54;
const OPT_PARAMETER_LIST: u8 = 55;
const OPT_END: u8 = 255;

// Message types (option 53).
const DHCPDISCOVER: u8 = 1;
const DHCPOFFER: u8 = 2;
const DHCPREQUEST: u8 = 3;
const DHCPACK: u8 = 5;
const DHCPNAK: u8 = 6;

/// Pause after a receive error other than a timeout.
const RECEIVE_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// A REQUEST is retransmitted this many times before starting over with a
/// DISCOVER (the offer may have been withdrawn).
const REQUEST_ATTEMPTS: u32 = 3;

/// What the server granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The leased address.
    pub address: Ipv4Addr,
    /// Prefix length from the subnet mask (1..=32).
    pub prefix_len: u8,
    /// First router (option 3), used as the default gateway.
    pub router: Option<Ipv4Addr>,
    /// DNS servers (option 6), in the server's order.
    pub dns: Vec<Ipv4Addr>,
    /// Lease time in seconds (option 51); `u32::MAX` means infinite.
    pub lease_secs: Option<u32>,
    /// The server that granted it (option 54).
    pub server: Ipv4Addr,
}

impl Lease {
    /// The rtnetlink configuration applying this lease to `interface`.
    pub fn ipv4_config(&self, interface: &str) -> Ipv4Config {
        Ipv4Config {
            interface: interface.into(),
            address: self.address,
            prefix_len: self.prefix_len,
            gateway: self.router,
        }
    }
}

/// Retransmission timing: each wait doubles from `first_wait` up to
/// `max_wait`; the whole exchange gives up after `total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Wait after the first transmission.
    pub first_wait: Duration,
    /// Longest wait after any transmission.
    pub max_wait: Duration,
    /// Deadline for the whole exchange.
    pub total: Duration,
}

impl Default for Timing {
    /// 1 s, 2 s, 4 s, 3 s: four transmissions within 10 s. A server on the
    /// same bridge (dnsmasq, QEMU's user network) answers in milliseconds.
    fn default() -> Self {
        Timing {
            first_wait: Duration::from_secs(1),
            max_wait: Duration::from_secs(4),
            total: Duration::from_secs(10),
        }
    }
}

/// No lease was obtained.
#[derive(Debug, thiserror::Error)]
pub enum DhcpError {
    /// Reading the transaction id from the random source.
    #[error("transaction id from {path}: {source}")]
    Random {
        /// The random source.
        path: String,
        /// Why.
        source: io::Error,
    },
    /// The interface has no Ethernet address.
    #[error("{interface}: no Ethernet hardware address ({reason})")]
    HardwareAddress {
        /// Interface name.
        interface: String,
        /// Why.
        reason: String,
    },
    /// Setting up the client socket.
    #[error("{interface}: {step}: {source}")]
    Socket {
        /// Interface name.
        interface: String,
        /// Which step, e.g. "bind 0.0.0.0:68".
        step: &'static str,
        /// Why.
        source: io::Error,
    },
    /// The deadline passed without an acknowledged lease.
    #[error(
        "no lease on {interface} within {total:?}: {discovers} DISCOVER and {requests} \
         REQUEST sent, {offers} OFFER and {naks} NAK received, {ignored} reply(ies) ignored{}",
        last_problem.as_ref().map(|p| format!("; last problem: {p}")).unwrap_or_default()
    )]
    NoLease {
        /// Interface name.
        interface: String,
        /// The deadline.
        total: Duration,
        /// DISCOVERs sent.
        discovers: u32,
        /// REQUESTs sent.
        requests: u32,
        /// Usable OFFERs received.
        offers: u32,
        /// NAKs received.
        naks: u32,
        /// Datagrams ignored (malformed, not ours, unexpected).
        ignored: u32,
        /// The last reason a reply was ignored or a send failed.
        last_problem: Option<String>,
    },
}

/// A reply that is not a well-formed answer to this transaction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// Shorter than the header and magic cookie.
    #[error("{len} bytes, shorter than the {min}-byte header and magic cookie")]
    TooShort {
        /// Datagram length.
        len: usize,
        /// Minimum.
        min: usize,
    },
    /// `op` is not BOOTREPLY.
    #[error("op {0} at offset 0, expected 2 (BOOTREPLY)")]
    NotAReply(u8),
    /// Not Ethernet addressing.
    #[error("htype {htype}/hlen {hlen} at offset 1, expected 1/6 (Ethernet)")]
    HardwareType {
        /// htype.
        htype: u8,
        /// hlen.
        hlen: u8,
    },
    /// Another transaction.
    #[error("xid {got:#010x} at offset 4, expected {expected:#010x}")]
    Xid {
        /// Ours.
        expected: u32,
        /// In the reply.
        got: u32,
    },
    /// Another client.
    #[error("chaddr {got} at offset 28, expected {expected}")]
    ClientAddress {
        /// Ours.
        expected: String,
        /// In the reply.
        got: String,
    },
    /// Not a DHCP message.
    #[error("magic cookie {0:02x?} at offset 236, expected [63, 82, 53, 63]")]
    Cookie([u8; 4]),
    /// An option runs past the end of the datagram.
    #[error("option {code} at offset {offset} runs past the end of the datagram")]
    OptionTruncated {
        /// Option code.
        code: u8,
        /// Offset of the code byte.
        offset: usize,
    },
    /// The options end without the END option.
    #[error("options are not terminated by END (255)")]
    Unterminated,
    /// An option of the wrong length.
    #[error("option {code} has length {len}, expected {expected}")]
    OptionLength {
        /// Option code.
        code: u8,
        /// Its length.
        len: usize,
        /// What it should be.
        expected: String,
    },
    /// No message type option.
    #[error("no message type (option 53)")]
    NoMessageType,
}

/// The DHCP message types a client can receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReplyKind {
    Offer,
    Ack,
    Nak,
    /// Any other type: valid DHCP, never the answer a client waits for.
    Other(u8),
}

/// A parsed server reply: the fields and options this client uses.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reply {
    kind: ReplyKind,
    your_address: Ipv4Addr,
    server_id: Option<Ipv4Addr>,
    subnet_mask: Option<Ipv4Addr>,
    routers: Vec<Ipv4Addr>,
    dns: Vec<Ipv4Addr>,
    lease_secs: Option<u32>,
}

/// What the client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outgoing {
    Discover,
    /// A REQUEST in the SELECTING state, for an OFFER.
    Request {
        address: Ipv4Addr,
        server: Ipv4Addr,
    },
}

/// A transaction id: four bytes from `urandom` (`/dev/urandom` in the TD),
/// so the xid differs between boots and between TDs on one bridge.
pub fn random_xid(urandom: &Path) -> Result<u32, DhcpError> {
    let mut bytes = [0u8; 4];
    std::fs::File::open(urandom)
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|source| DhcpError::Random {
            path: urandom.display().to_string(),
            source,
        })?;
    Ok(u32::from_ne_bytes(bytes))
}

/// The Ethernet address of `interface` (getifaddrs, AF_PACKET entry).
pub fn hardware_address(interface: &str) -> Result<[u8; 6], DhcpError> {
    let fail = |reason: String| DhcpError::HardwareAddress {
        interface: interface.into(),
        reason,
    };
    let addresses = nix::ifaddrs::getifaddrs().map_err(|e| fail(format!("getifaddrs: {e}")))?;
    addresses
        .filter(|a| a.interface_name == interface)
        .find_map(|a| a.address?.as_link_addr()?.addr())
        .filter(|mac| *mac != [0; 6])
        .ok_or_else(|| fail("no link-layer address".into()))
}

/// Obtain a lease on `interface` (already up, no address yet) for the
/// hardware address `mac`, with transaction id `xid`.
pub fn obtain_lease(
    interface: &str,
    mac: [u8; 6],
    xid: u32,
    timing: &Timing,
) -> Result<Lease, DhcpError> {
    let mut exchange = Exchange {
        socket: client_socket(interface)?,
        interface,
        xid,
        mac,
        stats: Stats::default(),
    };
    let started = Instant::now();
    let deadline = started.checked_add(timing.total).unwrap_or(started);
    let mut offer: Option<Offer> = None;
    let mut requests_for_offer = 0;
    let mut wait = timing.first_wait;
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(exchange.stats.no_lease(interface, timing.total));
        }
        let outgoing = match offer {
            None => Outgoing::Discover,
            Some(o) => Outgoing::Request {
                address: o.address,
                server: o.server,
            },
        };
        let secs = u16::try_from(now.duration_since(started).as_secs()).unwrap_or(u16::MAX);
        exchange.send(outgoing, secs);
        let until = now.checked_add(wait).map_or(deadline, |t| t.min(deadline));
        wait = wait.saturating_mul(2).min(timing.max_wait);
        match offer {
            None => {
                offer = exchange.receive(until, accept_offer)?;
                if let Some(o) = offer {
                    exchange.stats.offers += 1;
                    say!("DHCP: offer of {} from {}", o.address, o.server);
                    requests_for_offer = 0;
                    wait = timing.first_wait;
                }
            }
            Some(o) => match exchange.receive(until, |reply| accept_answer(reply, o))? {
                Some(Answer::Ack(lease)) => return Ok(lease),
                Some(Answer::Nak) => {
                    exchange.stats.naks += 1;
                    say!("DHCP: NAK from {}: starting over", o.server);
                    offer = None;
                    wait = timing.first_wait;
                }
                None => {
                    requests_for_offer += 1;
                    if requests_for_offer >= REQUEST_ATTEMPTS {
                        offer = None;
                    }
                }
            },
        }
    }
}

/// A usable OFFER.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Offer {
    address: Ipv4Addr,
    server: Ipv4Addr,
}

/// The server's answer to our REQUEST.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Ack(Lease),
    Nak,
}

/// Counters for the error message when no lease comes.
#[derive(Debug, Default)]
struct Stats {
    discovers: u32,
    requests: u32,
    offers: u32,
    naks: u32,
    ignored: u32,
    last_problem: Option<String>,
}

impl Stats {
    fn no_lease(self, interface: &str, total: Duration) -> DhcpError {
        DhcpError::NoLease {
            interface: interface.into(),
            total,
            discovers: self.discovers,
            requests: self.requests,
            offers: self.offers,
            naks: self.naks,
            ignored: self.ignored,
            last_problem: self.last_problem,
        }
    }
}

fn client_socket(interface: &str) -> Result<UdpSocket, DhcpError> {
    let fail = |step, source| DhcpError::Socket {
        interface: interface.into(),
        step,
        source,
    };
    let socket = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, CLIENT_PORT))
        .map_err(|e| fail("bind 0.0.0.0:68", e))?;
    setsockopt(&socket, sockopt::BindToDevice, &interface.into())
        .map_err(|e| fail("SO_BINDTODEVICE", e.into()))?;
    socket
        .set_broadcast(true)
        .map_err(|e| fail("SO_BROADCAST", e))?;
    Ok(socket)
}

/// One transaction: the socket, its identity, and what happened so far.
struct Exchange<'a> {
    socket: UdpSocket,
    interface: &'a str,
    xid: u32,
    mac: [u8; 6],
    stats: Stats,
}

impl Exchange<'_> {
    /// Broadcast a message. A failed send is only recorded: the next
    /// retransmission may succeed, and the deadline bounds the attempts.
    fn send(&mut self, outgoing: Outgoing, secs: u16) {
        let to = SocketAddrV4::new(Ipv4Addr::BROADCAST, SERVER_PORT);
        match self
            .socket
            .send_to(&encode(outgoing, self.xid, &self.mac, secs), to)
        {
            Ok(_) => match outgoing {
                Outgoing::Discover => self.stats.discovers += 1,
                Outgoing::Request { .. } => self.stats.requests += 1,
            },
            Err(e) => self.stats.last_problem = Some(format!("sending to {to}: {e}")),
        }
    }

    /// Wait until `until` for a datagram from the server port that parses
    /// as a reply to this transaction and that `accept` takes; everything
    /// else is counted as ignored. `Ok(None)` when the time is up.
    fn receive<T>(
        &mut self,
        until: Instant,
        mut accept: impl FnMut(Reply) -> Result<T, String>,
    ) -> Result<Option<T>, DhcpError> {
        let mut buf = [0u8; RECEIVE_BUFFER];
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.socket
                .set_read_timeout(Some(left))
                .map_err(|source| DhcpError::Socket {
                    interface: self.interface.into(),
                    step: "SO_RCVTIMEO",
                    source,
                })?;
            let (len, from) = match self.socket.recv_from(&mut buf) {
                Ok(received) => received,
                Err(e) if is_timeout_or_interrupt(&e) => continue,
                Err(e) => {
                    // Not a timeout: pause rather than spin until `until`.
                    self.stats.last_problem = Some(format!("receiving: {e}"));
                    std::thread::sleep(left.min(RECEIVE_ERROR_PAUSE));
                    continue;
                }
            };
            let verdict = if from.port() != SERVER_PORT {
                Err(format!("datagram from {from}, not from port {SERVER_PORT}"))
            } else {
                buf.get(..len)
                    .ok_or_else(|| format!("length {len} over the buffer"))
                    .and_then(|packet| {
                        parse_reply(packet, self.xid, &self.mac).map_err(|e| e.to_string())
                    })
                    .and_then(&mut accept)
                    .map_err(|e| format!("reply from {from}: {e}"))
            };
            match verdict {
                Ok(value) => return Ok(Some(value)),
                Err(problem) => {
                    self.stats.ignored = self.stats.ignored.saturating_add(1);
                    self.stats.last_problem = Some(problem);
                }
            }
        }
    }
}

fn is_timeout_or_interrupt(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// While selecting: an OFFER of a usable address, with a server id.
fn accept_offer(reply: Reply) -> Result<Offer, String> {
    if reply.kind != ReplyKind::Offer {
        return Err(format!("{:?} while waiting for an OFFER", reply.kind));
    }
    check_address(reply.your_address)?;
    let server = reply
        .server_id
        .ok_or("OFFER without a server identifier (option 54)")?;
    Ok(Offer {
        address: reply.your_address,
        server,
    })
}

/// While requesting: an ACK for the offered address, or a NAK, from the
/// server that made the offer.
fn accept_answer(reply: Reply, offer: Offer) -> Result<Answer, String> {
    if reply.server_id != Some(offer.server) {
        return Err(format!(
            "{:?} from server {:?}, we requested from {}",
            reply.kind, reply.server_id, offer.server
        ));
    }
    match reply.kind {
        ReplyKind::Nak => Ok(Answer::Nak),
        ReplyKind::Ack if reply.your_address != offer.address => Err(format!(
            "ACK for {}, we requested {}",
            reply.your_address, offer.address
        )),
        ReplyKind::Ack => lease_from_ack(reply, offer.server).map(Answer::Ack),
        other => Err(format!("{other:?} while waiting for an ACK")),
    }
}

/// Build the lease from an ACK: the address must be unicast and the subnet
/// mask contiguous.
fn lease_from_ack(ack: Reply, server: Ipv4Addr) -> Result<Lease, String> {
    check_address(ack.your_address)?;
    let mask = ack
        .subnet_mask
        .ok_or("ACK without a subnet mask (option 1)")?;
    let prefix_len = prefix_len(mask).ok_or_else(|| format!("subnet mask {mask} is invalid"))?;
    Ok(Lease {
        address: ack.your_address,
        prefix_len,
        router: ack.routers.first().copied(),
        dns: ack.dns,
        lease_secs: ack.lease_secs,
        server,
    })
}

fn check_address(address: Ipv4Addr) -> Result<(), String> {
    if address.is_unspecified()
        || address.is_broadcast()
        || address.is_multicast()
        || address.is_loopback()
    {
        return Err(format!(
            "offered address {address} is not a unicast address"
        ));
    }
    Ok(())
}

/// Prefix length of a contiguous, non-zero mask.
fn prefix_len(mask: Ipv4Addr) -> Option<u8> {
    let bits = u32::from(mask);
    let len = bits.leading_ones();
    (len > 0 && bits.checked_shl(len).unwrap_or(0) == 0).then_some(len as u8)
}

/// Encode a DISCOVER or REQUEST (padded to the BOOTP minimum).
fn encode(outgoing: Outgoing, xid: u32, mac: &[u8; 6], secs: u16) -> Vec<u8> {
    let mut msg = Vec::with_capacity(MIN_MESSAGE_LEN);
    msg.extend_from_slice(&[OP_REQUEST, HTYPE_ETHERNET, HLEN_ETHERNET, 0]);
    msg.extend_from_slice(&xid.to_be_bytes());
    msg.extend_from_slice(&secs.to_be_bytes());
    msg.extend_from_slice(&FLAG_BROADCAST.to_be_bytes());
    msg.extend_from_slice(&[0; 16]); // ciaddr, yiaddr, siaddr, giaddr
    msg.extend_from_slice(mac);
    msg.resize(HEADER_LEN, 0); // rest of chaddr, sname, file
    msg.extend_from_slice(&MAGIC_COOKIE);
    let params = [OPT_SUBNET_MASK, OPT_ROUTER, OPT_DNS, OPT_LEASE_TIME];
    match outgoing {
        Outgoing::Discover => {
            push_option(&mut msg, OPT_MESSAGE_TYPE, &[DHCPDISCOVER]);
        }
        Outgoing::Request { address, server } => {
            push_option(&mut msg, OPT_MESSAGE_TYPE, &[DHCPREQUEST]);
            push_option(&mut msg, OPT_REQUESTED_ADDRESS, &address.octets());
            push_option(&mut msg, OPT_SERVER_ID, &server.octets());
        }
    }
    push_option(&mut msg, OPT_PARAMETER_LIST, &params);
    msg.push(OPT_END);
    if msg.len() < MIN_MESSAGE_LEN {
        msg.resize(MIN_MESSAGE_LEN, OPT_PAD);
    }
    msg
}

/// Append one option; callers pass at most a few bytes.
fn push_option(msg: &mut Vec<u8>, code: u8, data: &[u8]) {
    msg.push(code);
    msg.push(data.len() as u8);
    msg.extend_from_slice(data);
}

/// Parse a server reply to transaction `xid` from client `mac`. Options in
/// `sname`/`file` (option overload, 52) are not read.
fn parse_reply(packet: &[u8], xid: u32, mac: &[u8; 6]) -> Result<Reply, ReplyError> {
    let options_at = HEADER_LEN + MAGIC_COOKIE.len();
    let too_short = || ReplyError::TooShort {
        len: packet.len(),
        min: options_at,
    };
    let options = packet.get(options_at..).ok_or_else(too_short)?;
    // Every read below is inside the header, which is now known to be there.
    let [op, htype, hlen] = array(packet, 0).ok_or_else(too_short)?;
    let got_xid = array(packet, 4)
        .map(u32::from_be_bytes)
        .ok_or_else(too_short)?;
    let your_address = array(packet, 16)
        .map(Ipv4Addr::from)
        .ok_or_else(too_short)?;
    let chaddr: [u8; 6] = array(packet, 28).ok_or_else(too_short)?;
    let cookie: [u8; 4] = array(packet, HEADER_LEN).ok_or_else(too_short)?;
    if op != OP_REPLY {
        return Err(ReplyError::NotAReply(op));
    }
    if (htype, hlen) != (HTYPE_ETHERNET, HLEN_ETHERNET) {
        return Err(ReplyError::HardwareType { htype, hlen });
    }
    if got_xid != xid {
        return Err(ReplyError::Xid {
            expected: xid,
            got: got_xid,
        });
    }
    if chaddr != *mac {
        return Err(ReplyError::ClientAddress {
            expected: hex::encode(mac),
            got: hex::encode(chaddr),
        });
    }
    if cookie != MAGIC_COOKIE {
        return Err(ReplyError::Cookie(cookie));
    }
    let options = parse_options(options, options_at)?;
    let kind = match exactly::<1>(&options, OPT_MESSAGE_TYPE)? {
        Some([DHCPOFFER]) => ReplyKind::Offer,
        Some([DHCPACK]) => ReplyKind::Ack,
        Some([DHCPNAK]) => ReplyKind::Nak,
        Some([other]) => ReplyKind::Other(other),
        None => return Err(ReplyError::NoMessageType),
    };
    Ok(Reply {
        kind,
        your_address,
        server_id: exactly::<4>(&options, OPT_SERVER_ID)?.map(Ipv4Addr::from),
        subnet_mask: exactly::<4>(&options, OPT_SUBNET_MASK)?.map(Ipv4Addr::from),
        routers: address_list(&options, OPT_ROUTER)?,
        dns: address_list(&options, OPT_DNS)?,
        lease_secs: exactly::<4>(&options, OPT_LEASE_TIME)?.map(u32::from_be_bytes),
    })
}

/// `N` bytes at `at`, if the packet is long enough.
fn array<const N: usize>(packet: &[u8], at: usize) -> Option<[u8; N]> {
    packet.get(at..at.checked_add(N)?)?.try_into().ok()
}

/// Split the options area into code → data. A code that appears more than
/// once is concatenated (RFC 3396). `base` is the area's offset in the
/// datagram, for error messages.
fn parse_options(area: &[u8], base: usize) -> Result<BTreeMap<u8, Vec<u8>>, ReplyError> {
    let mut options: BTreeMap<u8, Vec<u8>> = BTreeMap::new();
    let mut at = 0;
    loop {
        let code = *area.get(at).ok_or(ReplyError::Unterminated)?;
        match code {
            OPT_END => return Ok(options),
            OPT_PAD => at += 1,
            _ => {
                let truncated = ReplyError::OptionTruncated {
                    code,
                    offset: base + at,
                };
                let len = usize::from(*area.get(at + 1).ok_or(truncated.clone())?);
                let data = area.get(at + 2..at + 2 + len).ok_or(truncated)?;
                options.entry(code).or_default().extend_from_slice(data);
                at += 2 + len;
            }
        }
    }
}

/// An option that must be exactly `N` bytes long, if present.
fn exactly<const N: usize>(
    options: &BTreeMap<u8, Vec<u8>>,
    code: u8,
) -> Result<Option<[u8; N]>, ReplyError> {
    options
        .get(&code)
        .map(|data| {
            <[u8; N]>::try_from(data.as_slice()).map_err(|_| ReplyError::OptionLength {
                code,
                len: data.len(),
                expected: N.to_string(),
            })
        })
        .transpose()
}

/// An option holding one or more IPv4 addresses.
fn address_list(options: &BTreeMap<u8, Vec<u8>>, code: u8) -> Result<Vec<Ipv4Addr>, ReplyError> {
    let Some(data) = options.get(&code) else {
        return Ok(Vec::new());
    };
    if data.is_empty() || data.len() % 4 != 0 {
        return Err(ReplyError::OptionLength {
            code,
            len: data.len(),
            expected: "a non-zero multiple of 4".into(),
        });
    }
    Ok(data
        .chunks_exact(4)
        .filter_map(|c| <[u8; 4]>::try_from(c).ok().map(Ipv4Addr::from))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
    const XID: u32 = 0x1234_abcd;

    /// A server reply built by hand from RFC 2131's field table (not with
    /// `encode`): 10.0.2.15 for MAC, options as QEMU's user network sends
    /// them, with a PAD in the middle and zero padding after END.
    fn reply(message_type: u8) -> Vec<u8> {
        let mut p = vec![
            2, 1, 6, 0, // op BOOTREPLY, htype Ethernet, hlen 6, hops
            0x12, 0x34, 0xab, 0xcd, // xid
            0, 0, 0x80, 0, // secs, flags (broadcast)
            0, 0, 0, 0, // ciaddr
            10, 0, 2, 15, // yiaddr
            10, 0, 2, 2, // siaddr
            0, 0, 0, 0, // giaddr
            0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // chaddr (6 of 16 bytes)
        ];
        p.resize(236, 0);
        p.extend_from_slice(&[99, 130, 83, 99]);
        p.extend_from_slice(&[53, 1, message_type]);
        p.extend_from_slice(&[54, 4, 10, 0, 2, 2]);
        p.extend_from_slice(&[51, 4, 0, 1, 0x51, 0x80]); // 86400 s
        p.push(0); // PAD
        p.extend_from_slice(&[1, 4, 255, 255, 255, 0]);
        p.extend_from_slice(&[3, 4, 10, 0, 2, 2]);
        p.extend_from_slice(&[6, 8, 10, 0, 2, 3, 1, 1, 1, 1]);
        p.push(255);
        p.resize(300, 0);
        p
    }

    fn ip(a: u8, b: u8, c: u8, d: u8) -> Ipv4Addr {
        Ipv4Addr::new(a, b, c, d)
    }

    #[test]
    fn offer_is_parsed_field_by_field() {
        let offer = parse_reply(&reply(DHCPOFFER), XID, &MAC).unwrap();
        assert_eq!(offer.kind, ReplyKind::Offer);
        assert_eq!(offer.your_address, ip(10, 0, 2, 15));
        assert_eq!(offer.server_id, Some(ip(10, 0, 2, 2)));
        assert_eq!(offer.subnet_mask, Some(ip(255, 255, 255, 0)));
        assert_eq!(offer.routers, vec![ip(10, 0, 2, 2)]);
        assert_eq!(offer.dns, vec![ip(10, 0, 2, 3), ip(1, 1, 1, 1)]);
        assert_eq!(offer.lease_secs, Some(86400));
        assert_eq!(
            accept_offer(offer),
            Ok(Offer {
                address: ip(10, 0, 2, 15),
                server: ip(10, 0, 2, 2)
            })
        );
    }

    #[test]
    fn ack_becomes_the_lease() {
        let offer = Offer {
            address: ip(10, 0, 2, 15),
            server: ip(10, 0, 2, 2),
        };
        let ack = parse_reply(&reply(DHCPACK), XID, &MAC).unwrap();
        let Ok(Answer::Ack(lease)) = accept_answer(ack, offer) else {
            panic!("not an ACK");
        };
        assert_eq!(
            lease,
            Lease {
                address: ip(10, 0, 2, 15),
                prefix_len: 24,
                router: Some(ip(10, 0, 2, 2)),
                dns: vec![ip(10, 0, 2, 3), ip(1, 1, 1, 1)],
                lease_secs: Some(86400),
                server: ip(10, 0, 2, 2),
            }
        );
        assert_eq!(
            lease.ipv4_config("eth0"),
            Ipv4Config {
                interface: "eth0".into(),
                address: ip(10, 0, 2, 15),
                prefix_len: 24,
                gateway: Some(ip(10, 0, 2, 2)),
            }
        );

        let nak = parse_reply(&reply(DHCPNAK), XID, &MAC).unwrap();
        assert_eq!(accept_answer(nak, offer), Ok(Answer::Nak));
        // The same ACK from a server we did not ask is not taken.
        let elsewhere = Offer {
            server: ip(10, 0, 2, 99),
            ..offer
        };
        let ack = parse_reply(&reply(DHCPACK), XID, &MAC).unwrap();
        assert!(accept_answer(ack.clone(), elsewhere).is_err());
        // Nor an ACK for another address, nor an OFFER in its place.
        let other_address = Offer {
            address: ip(10, 0, 2, 16),
            ..offer
        };
        assert!(accept_answer(ack, other_address).is_err());
        let offer_reply = parse_reply(&reply(DHCPOFFER), XID, &MAC).unwrap();
        assert!(accept_answer(offer_reply, offer).is_err());
    }

    /// Field layout per RFC 2131 (op, xid, flags, chaddr at 28, cookie at
    /// 236) and RFC 2132 (options), minimum BOOTP length 300.
    #[test]
    fn discover_and_request_layout() {
        let discover = encode(Outgoing::Discover, XID, &MAC, 3);
        assert_eq!(discover.len(), 300);
        assert_eq!(
            &discover[..12],
            &[1, 1, 6, 0, 0x12, 0x34, 0xab, 0xcd, 0, 3, 0x80, 0]
        );
        assert_eq!(&discover[12..28], &[0; 16]);
        assert_eq!(&discover[28..34], &MAC);
        assert!(discover[34..236].iter().all(|b| *b == 0));
        assert_eq!(&discover[236..240], &[99, 130, 83, 99]);
        assert_eq!(&discover[240..250], &[53, 1, 1, 55, 4, 1, 3, 6, 51, 255]);
        assert!(discover[250..].iter().all(|b| *b == 0));

        let request = encode(
            Outgoing::Request {
                address: ip(10, 0, 2, 15),
                server: ip(10, 0, 2, 2),
            },
            XID,
            &MAC,
            0,
        );
        assert_eq!(request.len(), 300);
        assert_eq!(
            &request[240..262],
            &[
                53, 1, 3, // DHCPREQUEST
                50, 4, 10, 0, 2, 15, // requested address
                54, 4, 10, 0, 2, 2, // server id
                55, 4, 1, 3, 6, 51, // parameter list
                255
            ]
        );
    }

    #[test]
    fn replies_for_other_transactions_or_clients_are_rejected() {
        assert_eq!(
            parse_reply(&reply(DHCPOFFER), XID ^ 1, &MAC),
            Err(ReplyError::Xid {
                expected: XID ^ 1,
                got: XID
            })
        );
        let other_mac = [0x52, 0x54, 0, 0, 0, 1];
        assert!(matches!(
            parse_reply(&reply(DHCPOFFER), XID, &other_mac),
            Err(ReplyError::ClientAddress { .. })
        ));
        let mut request = reply(DHCPOFFER);
        request[0] = 1;
        assert_eq!(
            parse_reply(&request, XID, &MAC),
            Err(ReplyError::NotAReply(1))
        );
        let mut token_ring = reply(DHCPOFFER);
        token_ring[1] = 6;
        assert!(matches!(
            parse_reply(&token_ring, XID, &MAC),
            Err(ReplyError::HardwareType { htype: 6, hlen: 6 })
        ));
        let mut bootp = reply(DHCPOFFER);
        bootp[236] = 0;
        assert!(matches!(
            parse_reply(&bootp, XID, &MAC),
            Err(ReplyError::Cookie([0, 130, 83, 99]))
        ));
    }

    #[test]
    fn every_truncation_is_rejected_without_panic() {
        let full = reply(DHCPACK);
        // END is at offset 240 + 3 + 6 + 6 + 1 + 6 + 6 + 10 = 278.
        for len in 0..=278 {
            let result = parse_reply(&full[..len], XID, &MAC);
            assert!(result.is_err(), "{len} bytes accepted: {result:?}");
        }
        assert_eq!(
            parse_reply(&full[..100], XID, &MAC),
            Err(ReplyError::TooShort { len: 100, min: 240 })
        );
        assert_eq!(
            parse_reply(&full[..240], XID, &MAC),
            Err(ReplyError::Unterminated)
        );
        // Cut inside the DNS option (code at 268).
        assert_eq!(
            parse_reply(&full[..270], XID, &MAC),
            Err(ReplyError::OptionTruncated {
                code: 6,
                offset: 268
            })
        );
        assert!(parse_reply(&full[..279], XID, &MAC).is_ok());
    }

    /// Replace the options area with `options` (after the cookie).
    fn with_options(options: &[u8]) -> Vec<u8> {
        let mut p = reply(DHCPOFFER);
        p.truncate(240);
        p.extend_from_slice(options);
        p
    }

    #[test]
    fn garbled_options_are_rejected() {
        let cases: &[(&[u8], ReplyError)] = &[
            (&[255], ReplyError::NoMessageType),
            (
                &[53, 2, 2, 2, 255],
                ReplyError::OptionLength {
                    code: 53,
                    len: 2,
                    expected: "1".into(),
                },
            ),
            (
                &[53, 1, 2, 54, 3, 10, 0, 2, 255],
                ReplyError::OptionLength {
                    code: 54,
                    len: 3,
                    expected: "4".into(),
                },
            ),
            (
                &[53, 1, 2, 51, 0, 255],
                ReplyError::OptionLength {
                    code: 51,
                    len: 0,
                    expected: "4".into(),
                },
            ),
            (
                &[53, 1, 2, 6, 6, 1, 2, 3, 4, 5, 6, 255],
                ReplyError::OptionLength {
                    code: 6,
                    len: 6,
                    expected: "a non-zero multiple of 4".into(),
                },
            ),
            (
                &[53, 1, 2, 3, 0, 255],
                ReplyError::OptionLength {
                    code: 3,
                    len: 0,
                    expected: "a non-zero multiple of 4".into(),
                },
            ),
            (
                &[53, 1, 2, 6, 200, 1, 2, 3, 4],
                ReplyError::OptionTruncated {
                    code: 6,
                    offset: 243,
                },
            ),
            (&[53, 1, 2, 0, 0, 0], ReplyError::Unterminated),
        ];
        for (options, expected) in cases {
            assert_eq!(
                parse_reply(&with_options(options), XID, &MAC).as_ref(),
                Err(expected),
                "options {options:?}"
            );
        }
        // Bytes after END are not options.
        let after_end = with_options(&[53, 1, 2, 255, 6, 200]);
        assert!(parse_reply(&after_end, XID, &MAC).is_ok());
        // A split option is concatenated (RFC 3396).
        let split = with_options(&[53, 1, 2, 6, 4, 10, 0, 2, 3, 6, 4, 9, 9, 9, 9, 255]);
        assert_eq!(
            parse_reply(&split, XID, &MAC).unwrap().dns,
            vec![ip(10, 0, 2, 3), ip(9, 9, 9, 9)]
        );
    }

    #[test]
    fn random_bytes_never_panic() {
        // xorshift: deterministic garbage, some of it with a valid header.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let base = reply(DHCPACK);
        for _ in 0..2000 {
            let mut p = base.clone();
            let cut = (next() % 320) as usize;
            p.truncate(cut);
            for _ in 0..(next() % 8) {
                if !p.is_empty() {
                    let at = (next() as usize) % p.len();
                    p[at] = next() as u8;
                }
            }
            let _ = parse_reply(&p, XID, &MAC);
        }
    }

    #[test]
    fn unusable_offers_and_acks_are_refused() {
        let offer = |mutate: fn(&mut Reply)| {
            let mut r = parse_reply(&reply(DHCPOFFER), XID, &MAC).unwrap();
            mutate(&mut r);
            accept_offer(r)
        };
        assert!(offer(|r| r.your_address = Ipv4Addr::UNSPECIFIED).is_err());
        assert!(offer(|r| r.your_address = Ipv4Addr::BROADCAST).is_err());
        assert!(offer(|r| r.your_address = ip(224, 0, 0, 1)).is_err());
        assert!(offer(|r| r.server_id = None).is_err());
        assert!(offer(|r| r.kind = ReplyKind::Ack).is_err());
        assert!(offer(|r| r.kind = ReplyKind::Other(7)).is_err());

        let server = ip(10, 0, 2, 2);
        let ack = |mutate: fn(&mut Reply)| {
            let mut r = parse_reply(&reply(DHCPACK), XID, &MAC).unwrap();
            mutate(&mut r);
            lease_from_ack(r, server)
        };
        let no_mask = ack(|r| r.subnet_mask = None).unwrap_err();
        assert!(no_mask.contains("subnet mask"), "{no_mask}");
        assert!(ack(|r| r.subnet_mask = Some(ip(255, 0, 255, 0))).is_err());
        assert!(ack(|r| r.subnet_mask = Some(Ipv4Addr::UNSPECIFIED)).is_err());
        let no_router = ack(|r| r.routers.clear()).unwrap();
        assert_eq!(no_router.router, None);
    }

    #[test]
    fn prefix_lengths() {
        assert_eq!(prefix_len(ip(255, 255, 255, 255)), Some(32));
        assert_eq!(prefix_len(ip(255, 255, 255, 0)), Some(24));
        assert_eq!(prefix_len(ip(255, 255, 240, 0)), Some(20));
        assert_eq!(prefix_len(ip(128, 0, 0, 0)), Some(1));
        assert_eq!(prefix_len(ip(0, 0, 0, 0)), None);
        assert_eq!(prefix_len(ip(255, 255, 0, 255)), None);
        assert_eq!(prefix_len(ip(0, 255, 255, 255)), None);
    }

    #[test]
    fn transaction_ids_come_from_the_random_source() {
        let dir = tempfile::tempdir().unwrap();
        let fixed = dir.path().join("random");
        std::fs::write(&fixed, [1, 2, 3, 4, 5]).unwrap();
        assert_eq!(
            random_xid(&fixed).unwrap(),
            u32::from_ne_bytes([1, 2, 3, 4])
        );
        std::fs::write(&fixed, [1, 2]).unwrap();
        assert!(random_xid(&fixed).is_err(), "two bytes are not enough");
        let urandom = Path::new("/dev/urandom");
        let ids: Vec<u32> = (0..4).map(|_| random_xid(urandom).unwrap()).collect();
        assert!(ids.windows(2).any(|w| w[0] != w[1]), "{ids:?}");
    }

    use crate::net::tests::ip as run_ip;

    /// Run `test` on a thread with a private network namespace holding a
    /// veth pair eth0/eth1; skipped without CAP_SYS_ADMIN.
    fn in_private_namespace(test: impl FnOnce() + Send + 'static) {
        std::thread::spawn(|| {
            if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET) {
                assert_eq!(e, nix::errno::Errno::EPERM, "unshare");
                ee_testkit::unavailable(
                    "dhcp: private network namespace",
                    "unshare(CLONE_NEWNET) needs CAP_SYS_ADMIN",
                );
                return;
            }
            // Reverse-path filtering must be off, as it is by default in the
            // TD: the server's source address has no route yet.
            for conf in ["all", "default"] {
                std::fs::write(format!("/proc/sys/net/ipv4/conf/{conf}/rp_filter"), "0").unwrap();
            }
            run_ip("link add eth0 type veth peer name eth1");
            test();
        })
        .join()
        .unwrap();
    }

    /// One DHCP message from the client, as the test server sees it.
    struct ClientMessage {
        from: std::net::SocketAddr,
        xid: u32,
        mac: [u8; 6],
        options: BTreeMap<u8, Vec<u8>>,
    }

    fn receive_client_message(socket: &UdpSocket) -> ClientMessage {
        let mut buf = [0u8; 1500];
        let (len, from) = socket.recv_from(&mut buf).unwrap();
        let msg = &buf[..len];
        assert_eq!(len, 300, "padded to the BOOTP minimum");
        assert_eq!(&msg[..3], &[1, 1, 6], "BOOTREQUEST over Ethernet");
        assert_eq!(&msg[10..12], &[0x80, 0], "BROADCAST flag");
        ClientMessage {
            from,
            xid: u32::from_be_bytes(msg[4..8].try_into().unwrap()),
            mac: msg[28..34].try_into().unwrap(),
            options: parse_options(&msg[240..], 240).unwrap(),
        }
    }

    /// Wait until `interface` (in this thread's namespace) is running, i.e.
    /// its operational state is UP. A veth end that gains its carrier when
    /// the peer comes up gets there asynchronously (the kernel's linkwatch
    /// work enables its transmit queue), and until then it drops what it
    /// sends without reporting an error.
    fn wait_until_running(interface: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let running = nix::ifaddrs::getifaddrs()
                .unwrap()
                .filter(|a| a.interface_name == interface)
                .any(|a| a.flags.contains(nix::net::if_::InterfaceFlags::IFF_RUNNING));
            if running {
                return;
            }
            assert!(Instant::now() < deadline, "{interface} is not running");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The real client against a test server on the other end of a veth
    /// pair, in a second namespace (a separate "host"): the exchange works
    /// over a plain UDP socket on an interface with no address, the client
    /// sends from 0.0.0.0:68, ignores replies for other transactions and
    /// garbage, and the lease it returns can be applied.
    #[test]
    fn obtains_a_lease_from_a_server_on_a_veth_peer() {
        in_private_namespace(|| {
            let (tid_tx, tid_rx) = std::sync::mpsc::channel();
            let (moved_tx, moved_rx) = std::sync::mpsc::channel::<()>();
            let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
            let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
            let server = std::thread::spawn(move || {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                tid_tx.send(nix::unistd::gettid()).unwrap();
                moved_rx.recv().unwrap();
                run_ip("address add 10.0.2.2/24 dev eth1");
                run_ip("link set eth1 up");
                let socket = UdpSocket::bind("0.0.0.0:67").unwrap();
                setsockopt(&socket, sockopt::BindToDevice, &"eth1".into()).unwrap();
                socket.set_broadcast(true).unwrap();
                wait_until_running("eth1");
                ready_tx.send(()).unwrap();
                let to_client = "255.255.255.255:68";

                // Answer like a real server, every DISCOVER with an OFFER:
                // a datagram can still be lost while a link comes up, and
                // the client then retransmits its DISCOVER.
                let mut transaction = None;
                let mac = loop {
                    let message = receive_client_message(&socket);
                    assert_eq!(message.from.to_string(), "0.0.0.0:68");
                    let (xid, mac) = *transaction.get_or_insert((message.xid, message.mac));
                    assert_eq!((message.xid, message.mac), (xid, mac), "one transaction");
                    let answer = |kind: u8, xid: u32| {
                        let mut p = reply(kind);
                        p[4..8].copy_from_slice(&xid.to_be_bytes());
                        p[28..34].copy_from_slice(&mac);
                        p
                    };
                    match message.options[&OPT_MESSAGE_TYPE][..] {
                        [DHCPDISCOVER] => {
                            // Another transaction's offer (of another
                            // address), then noise, then ours.
                            let mut foreign = answer(DHCPOFFER, xid ^ 1);
                            foreign[16..20].copy_from_slice(&[10, 0, 2, 99]);
                            socket.send_to(&foreign, to_client).unwrap();
                            socket.send_to(b"not DHCP", to_client).unwrap();
                            socket.send_to(&answer(DHCPOFFER, xid), to_client).unwrap();
                        }
                        [DHCPREQUEST] => {
                            assert_eq!(message.options[&OPT_REQUESTED_ADDRESS], [10, 0, 2, 15]);
                            assert_eq!(message.options[&OPT_SERVER_ID], [10, 0, 2, 2]);
                            socket.send_to(&answer(DHCPACK, xid), to_client).unwrap();
                            break mac;
                        }
                        ref other => panic!("message type {other:?}, expected DISCOVER or REQUEST"),
                    }
                };
                // This namespace dies with this thread, and with it the veth
                // pair, eth0 included: keep it until the client is done.
                let _ = done_rx.recv();
                mac
            });
            let tid = tid_rx.recv().unwrap();
            run_ip(&format!("link set eth1 netns {tid}"));
            crate::net::set_link_up("eth0").unwrap();
            moved_tx.send(()).unwrap();
            ready_rx.recv().unwrap();
            wait_until_running("eth0");

            let mac = hardware_address("eth0").unwrap();
            let lease = obtain_lease(
                "eth0",
                mac,
                random_xid(Path::new("/dev/urandom")).unwrap(),
                &Timing::default(),
            )
            .unwrap();
            assert_eq!(lease.address, ip(10, 0, 2, 15));
            assert_eq!(lease.prefix_len, 24);
            assert_eq!(lease.router, Some(ip(10, 0, 2, 2)));
            assert_eq!(lease.server, ip(10, 0, 2, 2));

            crate::net::configure(&lease.ipv4_config("eth0")).unwrap();
            assert!(run_ip("-o -4 addr show dev eth0").contains("inet 10.0.2.15/24"));
            assert!(run_ip("-4 route show default").contains("default via 10.0.2.2 dev eth0"));
            done_tx.send(()).unwrap();
            assert_eq!(server.join().unwrap(), mac, "the server saw our chaddr");
        });
    }

    #[test]
    fn gives_up_at_the_deadline_without_a_server() {
        in_private_namespace(|| {
            run_ip("link set eth1 up");
            crate::net::set_link_up("eth0").unwrap();
            let timing = Timing {
                first_wait: Duration::from_millis(100),
                max_wait: Duration::from_millis(200),
                total: Duration::from_millis(700),
            };
            let started = Instant::now();
            let err = obtain_lease("eth0", MAC, XID, &timing).unwrap_err();
            let elapsed = started.elapsed();
            assert!(
                elapsed >= timing.total && elapsed < Duration::from_secs(3),
                "{elapsed:?}"
            );
            // Sends at 0, 100, 300, 500 ms (waits of 100, 200, 200, 200 ms);
            // a loaded machine may delay one.
            let DhcpError::NoLease {
                discovers,
                requests,
                offers,
                ..
            } = err
            else {
                panic!("{err}");
            };
            assert!((3..=4).contains(&discovers), "{err}");
            assert_eq!((requests, offers), (0, 0));
            let text = err.to_string();
            assert!(
                text.starts_with(&format!(
                    "no lease on eth0 within 700ms: {discovers} DISCOVER"
                )),
                "{text}"
            );
        });
    }

    #[test]
    fn hardware_address_of_a_missing_interface_is_an_error() {
        let err = hardware_address("no-such-if0").unwrap_err().to_string();
        assert!(
            err.starts_with("no-such-if0: no Ethernet hardware address"),
            "{err}"
        );
    }
}
