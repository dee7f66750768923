//! Port forwards from the host into a guest: QEMU `hostfwd` options for user
//! networking, iptables DNAT rules for bridged networking, and the check
//! that a host port is free before a VM is started on it.
//!
//! Bridged forwards are tagged with the comment `ee-host:<name>`, so rules of
//! one VM can be told from another's and from everything else on the host;
//! the exact rules added are recorded in the VM's state so `stop` deletes
//! precisely those.

use std::net::{Ipv4Addr, TcpListener, UdpSocket};

use easyenclave::launch::Protocol;
use serde::{Deserialize, Serialize};

use crate::spec::{protocol_name, PortForward};

/// Prefix of the iptables comment on every rule ee-host adds.
pub const RULE_COMMENT_PREFIX: &str = "ee-host:";

/// `port` as a QEMU user-networking forward (`hostfwd=tcp:ADDR:HOST-:GUEST`).
pub fn host_forward(port: &PortForward) -> ee_qemu::HostForward {
    ee_qemu::HostForward {
        protocol: port.protocol,
        address: port.address,
        host_port: port.host_port,
        guest_port: port.guest_port,
    }
}

/// The comment tagging the rules of VM `name`.
pub fn rule_comment(name: &str) -> String {
    format!("{RULE_COMMENT_PREFIX}{name}")
}

/// One iptables rule, as recorded in the VM's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirewallRule {
    /// Table (`nat` or `filter`).
    pub table: String,
    /// Chain.
    pub chain: String,
    /// Insert at the top of the chain (`-I`) instead of appending (`-A`).
    pub insert: bool,
    /// The rule's match and target arguments.
    pub rule: Vec<String>,
}

impl FirewallRule {
    /// Arguments to `iptables` that add the rule.
    pub fn add_args(&self) -> Vec<String> {
        let verb = if self.insert { "-I" } else { "-A" };
        self.args(verb)
    }

    /// Arguments to `iptables` that delete the rule.
    pub fn delete_args(&self) -> Vec<String> {
        self.args("-D")
    }

    fn args(&self, verb: &str) -> Vec<String> {
        let mut args = vec![
            "-t".to_owned(),
            self.table.clone(),
            verb.to_owned(),
            self.chain.clone(),
        ];
        args.extend(self.rule.iter().cloned());
        args
    }
}

/// The rules forwarding `ports` of the host to the bridged guest at
/// `guest`: DNAT for traffic arriving at a host address (PREROUTING) and
/// for traffic from the host itself (OUTPUT), and an ACCEPT in FORWARD ahead
/// of libvirt's rules, which only let replies into a NAT network.
pub fn dnat_rules(name: &str, guest: Ipv4Addr, ports: &[PortForward]) -> Vec<FirewallRule> {
    let comment = rule_comment(name);
    let mut rules = Vec::new();
    for port in ports {
        let proto = protocol_name(port.protocol).to_owned();
        let to = format!("{guest}:{}", port.guest_port);
        let dnat = |chain: &str| FirewallRule {
            table: "nat".to_owned(),
            chain: chain.to_owned(),
            insert: false,
            rule: strings(&[
                "-p",
                &proto,
                "-m",
                "addrtype",
                "--dst-type",
                "LOCAL",
                "-m",
                &proto,
                "--dport",
                &port.host_port.to_string(),
                "-m",
                "comment",
                "--comment",
                &comment,
                "-j",
                "DNAT",
                "--to-destination",
                &to,
            ]),
        };
        rules.push(dnat("PREROUTING"));
        rules.push(dnat("OUTPUT"));
        rules.push(FirewallRule {
            table: "filter".to_owned(),
            chain: "FORWARD".to_owned(),
            insert: true,
            rule: strings(&[
                "-p",
                &proto,
                "-d",
                &guest.to_string(),
                "-m",
                &proto,
                "--dport",
                &port.guest_port.to_string(),
                "-m",
                "comment",
                "--comment",
                &comment,
                "-j",
                "ACCEPT",
            ]),
        });
    }
    rules
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Check that `port` can be bound on the host now, by binding and releasing
/// it. With bridged networking the DNAT rules catch the port on every
/// address, so the check binds 0.0.0.0.
pub fn probe_free(port: &PortForward, any_address: bool) -> std::io::Result<()> {
    let address = if any_address {
        Ipv4Addr::UNSPECIFIED
    } else {
        port.address
    };
    match port.protocol {
        Protocol::Tcp => TcpListener::bind((address, port.host_port)).map(drop),
        Protocol::Udp => UdpSocket::bind((address, port.host_port)).map(drop),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(protocol: Protocol, host: u16, guest: u16) -> PortForward {
        PortForward {
            protocol,
            host_port: host,
            guest_port: guest,
            address: Ipv4Addr::LOCALHOST,
        }
    }

    #[test]
    fn hostfwd_text() {
        assert_eq!(
            host_forward(&port(Protocol::Tcp, 18443, 8443)).option(),
            "hostfwd=tcp:127.0.0.1:18443-:8443"
        );
        assert_eq!(
            host_forward(&port(Protocol::Udp, 53, 5353)).option(),
            "hostfwd=udp:127.0.0.1:53-:5353"
        );
    }

    #[test]
    fn dnat_rules_are_tagged_and_deletable() {
        let rules = dnat_rules(
            "agent",
            Ipv4Addr::new(192, 168, 122, 10),
            &[port(Protocol::Tcp, 443, 8443)],
        );
        assert_eq!(rules.len(), 3);
        for rule in &rules {
            let add = rule.add_args().join(" ");
            assert!(add.contains("--comment ee-host:agent"), "{add}");
            // Deleting uses the same rule text, so it removes exactly what was added.
            assert_eq!(rule.delete_args()[4..], rule.add_args()[4..]);
            assert_eq!(rule.delete_args()[2], "-D");
        }
        assert_eq!(
            rules[0].add_args().join(" "),
            "-t nat -A PREROUTING -p tcp -m addrtype --dst-type LOCAL -m tcp --dport 443 \
             -m comment --comment ee-host:agent -j DNAT --to-destination 192.168.122.10:8443"
        );
        assert_eq!(
            rules[2].add_args().join(" "),
            "-t filter -I FORWARD -p tcp -d 192.168.122.10 -m tcp --dport 8443 \
             -m comment --comment ee-host:agent -j ACCEPT"
        );
    }

    #[test]
    fn probe_detects_a_bound_port() {
        let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let busy = taken.local_addr().unwrap().port();
        assert!(probe_free(&port(Protocol::Tcp, busy, 1), false).is_err());
        drop(taken);
        assert!(probe_free(&port(Protocol::Tcp, busy, 1), false).is_ok());
    }
}
