//! For tests: what the kernel does with a new connection from outside to a published port,
//! given direct rules. It reads the rules themselves, argument by argument, rather than
//! re-stating the policy, so that the plan can be checked against the policy evaluator and
//! the applier's order of calls against "never a window". An argument it does not know fails
//! the test instead of being skipped.
//!
//! The path modelled is the one of a connection Docker DNATs to a container: mangle
//! PREROUTING, nat PREROUTING (before Docker's own DNAT; first packets only), mangle FORWARD,
//! the filter
//! verdicts (direct rules in filter FORWARD and DOCKER-USER, both reached ahead of Docker's
//! ACCEPTs), mangle POSTROUTING. Without any rule the connection gets through, as with Docker
//! alone.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::docker::Protocol;
use crate::rules::{DirectRule, Family};

/// A new connection from outside, after Docker's DNAT: `orig_port` is the host port the client
/// connected to.
#[derive(Debug, Clone)]
pub struct Packet {
    pub source: IpAddr,
    pub in_interface: String,
    pub out_interface: String,
    pub protocol: Protocol,
    pub orig_port: u16,
    /// When it arrives: Unix seconds, for the time match.
    pub time: u64,
    /// Docker DNATed it (from host port `orig_port`); false for a client that routes straight
    /// to a container's address, whose `orig_port` is then the container's port.
    pub dnat: bool,
    /// A later packet of an established connection (from the client) rather than its first.
    pub established: bool,
    /// The address the client connected to, where it is a container's (a routed connection);
    /// None: the host's own, which Docker DNATed.
    pub orig_dst: Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// It reaches the container.
    Through,
    Dropped,
    /// Refused, with the REJECT's `--reject-with` ("icmp-port-unreachable" when none).
    Rejected(String),
    /// Not DNATed (the start-up guard): it goes to the host, where the zone judges it.
    ToHost,
}

enum Verdict {
    /// The chain (and those that called it) ends with this target.
    Stop(String, Vec<String>),
    /// Fell off the end of the chain or RETURNed.
    Continue,
}

struct Walk<'a> {
    rules: &'a [DirectRule],
    family: Family,
    packet: &'a Packet,
    mark: u32,
    /// The prefixes of the NFLOG rules the packet met, in order.
    logged: Vec<String>,
}

impl Walk<'_> {
    /// Evaluates a chain of a table: the rules in firewalld's order (priority, then the order
    /// they were added in).
    fn chain(&mut self, table: &str, chain: &str) -> Verdict {
        let mut rules: Vec<&DirectRule> = self
            .rules
            .iter()
            .filter(|rule| rule.family == self.family && rule.table == table && rule.chain == chain)
            .collect();
        rules.sort_by_key(|rule| rule.priority);
        for rule in rules {
            let (matched, target) = self.matches(rule);
            if !matched {
                continue;
            }
            let Some((name, arguments)) = target.split_first() else {
                continue;
            };
            match name.as_str() {
                "RETURN" => return Verdict::Continue,
                "MARK" => {
                    let (value, mask) = mark_value(option(arguments, "--set-xmark"));
                    self.mark = (self.mark & !mask) ^ value;
                }
                // Not a verdict: the packet goes on.
                "NFLOG" => self
                    .logged
                    .push(option(arguments, "--nflog-prefix").to_owned()),
                "ACCEPT" | "DROP" | "REJECT" => {
                    return Verdict::Stop(name.clone(), arguments.to_vec());
                }
                jump if jump.starts_with("DOCKGATE") || jump == "DOCKER-USER" => {
                    if let Verdict::Stop(name, arguments) = self.chain(table, jump) {
                        return Verdict::Stop(name, arguments);
                    }
                }
                other => panic!("the simulator does not know target {other} in {rule}"),
            }
        }
        Verdict::Continue
    }

    /// Whether every match of the rule holds, and the target with its arguments.
    fn matches(&self, rule: &DirectRule) -> (bool, Vec<String>) {
        let args = &rule.args;
        let mut matched = true;
        let mut at = 0;
        while at < args.len() {
            let negated = args[at] == "!";
            if negated {
                at += 1;
            }
            let word = args[at].as_str();
            let value = |n: usize| -> &str {
                args.get(at + n)
                    .unwrap_or_else(|| panic!("{word} without a value in {rule}"))
            };
            let (holds, used) = match word {
                "-j" => return (matched, args[at + 1..].to_vec()),
                "-m" => (true, 2),
                "-s" => (
                    value(1)
                        .split(',')
                        .any(|net| network(net).contains(&self.packet.source)),
                    2,
                ),
                "-i" => (interface(value(1), &self.packet.in_interface), 2),
                "-o" => (interface(value(1), &self.packet.out_interface), 2),
                "-p" => (value(1) == self.packet.protocol.as_str(), 2),
                // DNAT is conntrack's virtual state, true of every packet of the connection.
                "--ctstate" => (
                    value(1).split(',').any(|state| match state {
                        "NEW" => !self.packet.established,
                        "ESTABLISHED" => self.packet.established,
                        "DNAT" => self.packet.dnat,
                        "RELATED" | "INVALID" | "UNTRACKED" | "SNAT" => false,
                        other => panic!("the simulator does not know ctstate {other} in {rule}"),
                    }),
                    2,
                ),
                "--ctorigdstport" => {
                    let (first, last) = match value(1).split_once(':') {
                        Some((first, last)) => (port(first), port(last)),
                        None => (port(value(1)), port(value(1))),
                    };
                    ((first..=last).contains(&self.packet.orig_port), 2)
                }
                "--ctorigdst" => (
                    self.packet.orig_dst == Some(value(1).parse().expect("an address")),
                    2,
                ),
                "--src-range" => {
                    let (first, last) = value(1).split_once('-').expect("a range");
                    let (first, last): (IpAddr, IpAddr) =
                        (first.parse().unwrap(), last.parse().unwrap());
                    let source = self.packet.source;
                    (
                        source.is_ipv6() == first.is_ipv6() && first <= source && source <= last,
                        2,
                    )
                }
                // Every connection modelled is addressed to the host (Docker's DNAT follows).
                "--dst-type" => (value(1) == "LOCAL", 2),
                "--mark" => {
                    let (value, mask) = mark_value(value(1));
                    (self.mark & mask == value, 2)
                }
                // Every packet modelled comes from the client that opened the connection.
                "--ctdir" => (value(1) == "ORIGINAL", 2),
                // The time match with its default, UTC, as the plan writes it.
                "--datestop" => (self.packet.time <= unix_seconds(value(1)), 2),
                "--comment" => (true, 2),
                // The rate limit is not modelled: every packet is under it.
                "--limit" | "--limit-burst" => (true, 2),
                other => panic!("the simulator does not know {other} in {rule}"),
            };
            // `-m NAME` only names a module; `!` applies to the match after it.
            let holds = if word == "-m" { true } else { holds != negated };
            matched &= holds;
            at += used;
        }
        (matched, Vec::new())
    }
}

fn option<'a>(arguments: &'a [String], name: &str) -> &'a str {
    arguments
        .iter()
        .position(|argument| argument == name)
        .and_then(|at| arguments.get(at + 1))
        .unwrap_or_else(|| panic!("no {name} in {arguments:?}"))
}

fn network(text: &str) -> IpNet {
    text.parse()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .unwrap_or_else(|_| panic!("not a network: {text}"))
}

/// "2026-12-06T07:00:00" (UTC) -> Unix seconds.
fn unix_seconds(text: &str) -> u64 {
    humantime::parse_rfc3339(&format!("{text}Z"))
        .unwrap_or_else(|_| panic!("not a time match date: {text}"))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn port(text: &str) -> u16 {
    text.parse()
        .unwrap_or_else(|_| panic!("not a port: {text}"))
}

/// "0x10000000/0x10000000" -> (value, mask).
fn mark_value(text: &str) -> (u32, u32) {
    let (value, mask) = text.split_once('/').unwrap_or((text, "0xffffffff"));
    let hex = |text: &str| u32::from_str_radix(text.trim_start_matches("0x"), 16).unwrap();
    (hex(value), hex(mask))
}

/// iptables' interface match: a trailing `+` matches any rest.
fn interface(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('+') {
        Some(prefix) => name.starts_with(prefix),
        None => name == pattern,
    }
}

/// The comments of every rule in one chain whose matches hold for `packet` (whatever comes
/// first): which grants could have let it through.
pub fn matching(rules: &[DirectRule], packet: &Packet, table: &str, chain: &str) -> Vec<String> {
    let walk = Walk {
        rules,
        family: family_of(packet),
        packet,
        mark: 0,
        logged: Vec::new(),
    };
    rules
        .iter()
        .filter(|rule| rule.family == walk.family && rule.table == table && rule.chain == chain)
        .filter(|rule| walk.matches(rule).0)
        .filter_map(|rule| rule.comment().map(str::to_owned))
        .collect()
}

fn family_of(packet: &Packet) -> Family {
    if packet.source.is_ipv6() {
        Family::Ipv6
    } else {
        Family::Ipv4
    }
}

/// What the kernel does with `packet`, given the direct rules in force.
pub fn forward(rules: &[DirectRule], packet: &Packet) -> Fate {
    forward_logged(rules, packet).0
}

/// What the kernel does with `packet`, and the NFLOG prefixes it logged it with.
pub fn forward_logged(rules: &[DirectRule], packet: &Packet) -> (Fate, Vec<String>) {
    let mut walk = Walk {
        rules,
        family: family_of(packet),
        packet,
        mark: 0,
        logged: Vec::new(),
    };
    let fate = walk.fate();
    (fate, walk.logged)
}

impl Walk<'_> {
    fn fate(&mut self) -> Fate {
        let packet = self.packet;
        let _ = self.chain("mangle", "PREROUTING");
        // The nat table sees the first packet of a connection only.
        if !packet.established
            && let Verdict::Stop(target, _) = self.chain("nat", "PREROUTING")
            && target == "ACCEPT"
        {
            return Fate::ToHost;
        }
        if let Verdict::Stop(target, _) = self.chain("mangle", "FORWARD")
            && target == "DROP"
        {
            return Fate::Dropped;
        }
        for chain in ["FORWARD", "DOCKER-USER"] {
            match self.chain("filter", chain) {
                Verdict::Stop(target, arguments) if target == "REJECT" => {
                    let with = arguments
                        .iter()
                        .position(|argument| argument == "--reject-with")
                        .and_then(|at| arguments.get(at + 1))
                        .map_or("icmp-port-unreachable", String::as_str)
                        .to_owned();
                    return Fate::Rejected(with);
                }
                Verdict::Stop(target, _) if target == "DROP" => return Fate::Dropped,
                _ => {}
            }
        }
        if let Verdict::Stop(target, _) = self.chain("mangle", "POSTROUTING")
            && target == "DROP"
        {
            return Fate::Dropped;
        }
        Fate::Through
    }
}
