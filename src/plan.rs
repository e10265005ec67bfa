//! The rule plan: from the policy (config and runtime exposures) and Docker's view, the direct
//! chains and rules firewalld should hold. Pure: no I/O, so every scenario is a unit test.
//!
//! Where the rules live, and why not simply in DOCKER-USER:
//!
//! - The judging happens in the mangle table's FORWARD hook. It runs after Docker's DNAT (so
//!   conntrack knows the original host port) and before the filter table, and neither Docker
//!   nor anyone else reorders it. Filter FORWARD's order is Docker's: after a firewalld reload,
//!   Docker 20.10 re-adds its `-j DOCKER-USER` jump last, behind its own ACCEPTs, and Docker 28
//!   restores DNAT before the jump; rules that only live in DOCKER-USER stop applying then
//!   (both verified with real traffic, see README).
//! - mangle cannot REJECT, so a denied packet is only marked there. The mark is enforced twice:
//!   a REJECT in DOCKER-USER when the verdict is "reject" (reached while Docker keeps its jump
//!   first), and a DROP in mangle POSTROUTING, which every forwarded packet passes after the
//!   filter table. So a denied packet is refused when it can be and dropped when it cannot; it
//!   never gets through.
//! - Allowed packets only RETURN: a direct ACCEPT would not accept anything under firewalld's
//!   nftables backend, and Docker's own rules still decide after dockgate.
//! - One more pair covers the moment firewalld *starts*: it flushes the iptables tables one
//!   commit per table, mangle before nat, so for a few milliseconds the judgement is gone while
//!   Docker's DNAT still stands. mangle PREROUTING marks every new connection to a local address
//!   as seen, and nat PREROUTING, ahead of Docker's jump to its DNAT, lets an unseen one pass
//!   without DNAT: it goes to the host, where firewalld's zone judges it. The nat table goes in
//!   the same commit as Docker's DNAT, so no moment is left with DNAT but without this guard.
//! - Every rule carries a `dockgate` comment and dockgate's chains are named `DOCKGATE*`, so
//!   the applier can tell its own rules from everyone else's.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::config::PortRange;
use crate::config::{self, Config, OnRevoke, Source, Verdict};
use crate::docker::{self, Protocol, PublishedPort};
use crate::exposures::{self, Listed, RuntimeExposure};
use crate::policy::{self, Allow, Grant, Policy, Serving};
use crate::rules::{DirectChain, DirectRule, Family};
use crate::zones::Binding;

/// The comment every dockgate rule starts with.
pub const MARKER: &str = "dockgate";
/// Jumped to from mangle FORWARD for every new forwarded connection.
pub const ENTRY_CHAIN: &str = "DOCKGATE";
/// Judges a new connection from outside to a container: allows RETURN, the rest is marked.
pub const JUDGE_CHAIN: &str = "DOCKGATE-JUDGE";
/// The packet mark of a denied new connection; one bit, so other users of the mark keep theirs.
pub const DENY_MARK: &str = "0x10000000/0x10000000";
/// The packet mark of a new connection to a local address that passed mangle PREROUTING,
/// i.e. while dockgate's mangle rules are in the kernel.
pub const SEEN_MARK: &str = "0x20000000/0x20000000";
/// Comments of the start-up guard's two rules (see the module's documentation).
pub const SEEN_COMMENT: &str = "dockgate:seen";
pub const UNJUDGED_COMMENT: &str = "dockgate:unjudged";
/// Comment of the rules that end a denied packet.
pub const VERDICT_COMMENT: &str = "dockgate:verdict";

const MANGLE: &str = "mangle";
const NAT: &str = "nat";
const FILTER: &str = "filter";
const DOCKER_USER: &str = "DOCKER-USER";

/// Allows sit before the deny mark; what no allow let through is recorded between the two.
const ALLOW_PRIORITY: i32 = 0;
const RECORD_PRIORITY: i32 = 5;
const DENY_PRIORITY: i32 = 10;
/// Comment of the rules that log refused (or, auditing, would-be refused) connections.
pub const RECORD_COMMENT: &str = "dockgate:record";
/// The NFLOG prefix of those rules: `dockgate:deny:8080/tcp` (or `dockgate:audit:...`), the
/// port being the host port the client connected to (a routed container's own port). The
/// reader (`crate::refused`) parses it back.
pub const RECORD_PREFIX: &str = "dockgate";

/// Docker's side of the world, as far as the plan needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerView {
    pub ports: Vec<PublishedPort>,
    /// Bridge interfaces of Docker's bridge networks.
    pub bridges: Vec<String>,
}

/// The direct configuration dockgate wants firewalld to hold, in both layers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Chains dockgate owns and creates.
    pub chains: BTreeSet<DirectChain>,
    /// Chains owned by someone else (Docker's DOCKER-USER) that must be registered with
    /// firewalld before rules can go into them.
    pub foreign_chains: BTreeSet<DirectChain>,
    pub rules: BTreeSet<DirectRule>,
}

impl Plan {
    /// One line per chain and rule, for snapshots and logs.
    pub fn render(&self) -> String {
        let mut text = String::new();
        for chain in &self.chains {
            text += &format!("chain {} {} {}\n", chain.family, chain.table, chain.chain);
        }
        for chain in &self.foreign_chains {
            text += &format!(
                "register {} {} {}\n",
                chain.family, chain.table, chain.chain
            );
        }
        for rule in &self.rules {
            text += &format!("{rule}\n");
        }
        text
    }
}

/// Everything dockgate wants firewalld to hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub plan: Plan,
    /// Zone docker's host-access keys (`bind` is in `bridges`).
    pub zone: config::ZoneSettings,
    pub bridges: Binding,
    /// Docker has just rebuilt its rules after a firewalld reload or start, inserting them
    /// ahead of everyone's in filter FORWARD: put the verdict rules there back in front.
    pub reseat_verdict: bool,
    /// The published host ports the policy lets some source reach: where firewalld's
    /// StrictForwardPorts is on, each needs a forward-port for Docker's DNAT to pass firewalld
    /// at all (see `diff::forward_steps`). Empty unless dockgate enforces a policy: with
    /// "allow" it must not open what the admin's StrictForwardPorts closed.
    pub forward_ports: BTreeSet<(u16, Protocol)>,
    /// The config's: they tell which zone outside connections meet.
    pub external_interfaces: Vec<String>,
}

impl Desired {
    /// Nothing of dockgate's: what `dockgated --remove` leaves.
    pub fn nothing() -> Desired {
        Desired {
            plan: Plan::default(),
            zone: config::ZoneSettings::default(),
            bridges: Binding::Return,
            reseat_verdict: false,
            forward_ports: BTreeSet::new(),
            external_interfaces: Vec::new(),
        }
    }

    /// Whether a policy is enforced, which needs CleanupOnExit off.
    pub fn enforcing(&self) -> bool {
        !self.plan.rules.is_empty()
    }
}

/// What the desired state is built from: the one input of [`desired`], assembled the same way by
/// the daemon, `dockgated --once` and `dockgated inspect`.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub config: &'a Config,
    /// The runtime exposures as stored.
    pub runtime: &'a [RuntimeExposure],
    pub docker: &'a DockerView,
    /// Docker answered: its bridges may be bound to another zone.
    pub docker_up: bool,
    /// Docker is rebuilding its rules after a firewalld reload or start.
    pub rebuilding: bool,
}

impl Inputs<'_> {
    /// Every exposure, the config's and the runtime ones, as the API lists them.
    pub fn listed(&self) -> Vec<Listed> {
        exposures::listed(self.config, self.runtime)
    }

    pub fn policy(&self) -> Policy {
        Policy::new(self.config, &self.listed(), &self.docker.ports)
    }
}

/// Whether something of the config waits for Docker's rebuild after a firewalld reload:
/// binding the bridges, or putting the resets (verdict "reject", on_revoke "cut") back ahead
/// of Docker's rules in filter FORWARD.
pub fn waits_for_docker_rebuild(config: &Config) -> bool {
    config.zone.bind.is_some()
        || config.verdict == Verdict::Reject
        || config.on_revoke == OnRevoke::Cut
}

/// What dockgate wants firewalld to hold, given the config, the exposures and Docker's view.
pub fn desired(inputs: &Inputs<'_>) -> Desired {
    let zone = &inputs.config.zone;
    let bridges = match &zone.bind {
        None => Binding::Return,
        // Docker refuses to start while one of its bridges is bound elsewhere.
        Some(_) if !inputs.docker_up => Binding::Return,
        Some(_) if inputs.rebuilding => Binding::Leave,
        Some(zone) => Binding::Bind {
            zone: zone.clone(),
            bridges: inputs.docker.bridges.clone(),
        },
    };
    let policy = inputs.policy();
    let forward_ports = inputs
        .docker
        .ports
        .iter()
        .filter(|port| {
            policy.enforcing()
                && policy::serving(port) == Serving::Dnat
                && policy::access(&policy, None, port).state != policy::State::Denied
        })
        .map(|port| (port.host_port, port.protocol))
        .collect();
    Desired {
        plan: plan(&policy, &inputs.docker.bridges),
        zone: config::ZoneSettings {
            bind: None,
            ..zone.clone()
        },
        bridges,
        reseat_verdict: false,
        forward_ports,
        external_interfaces: inputs.config.external_interfaces.clone(),
    }
}

/// The rules that make the kernel do what the policy says, for Docker's bridges.
pub fn plan(policy: &Policy, bridges: &[String]) -> Plan {
    let mut plan = Plan::default();
    if !policy.judging() {
        // Docker's own behaviour: dockgate only reports.
        return plan;
    }
    for family in Family::ALL {
        let mut rules = Rules {
            plan: &mut plan,
            family,
        };
        rules.entry(policy, bridges);
        rules.judge(policy);
        rules.record(policy);
        if policy.enforcing() {
            rules.deny();
            rules.guard();
            rules.verdict(policy.verdict, policy.on_revoke);
        }
    }
    plan
}

/// The rules of one family, added to the plan.
struct Rules<'a> {
    plan: &'a mut Plan,
    family: Family,
}

impl Rules<'_> {
    fn add(&mut self, table: &str, chain: &str, priority: i32, args: Vec<String>) {
        self.plan.rules.insert(DirectRule {
            family: self.family,
            table: table.to_owned(),
            chain: chain.to_owned(),
            priority,
            args,
        });
    }

    /// Every new forwarded connection into dockgate's entry chain, and from there every one
    /// from outside to a Docker bridge into the judging chain.
    fn entry(&mut self, policy: &Policy, bridges: &[String]) {
        for chain in [ENTRY_CHAIN, JUDGE_CHAIN] {
            self.plan
                .chains
                .insert(DirectChain::new(self.family, MANGLE, chain));
        }
        // With on_revoke = "cut", every packet a client outside sends on a connection is
        // judged, not only the first: a connection ends with the grant that admitted it
        // (removed, or past the end its rule carries), whether dockgated runs or not. Packets
        // in the reply direction are never judged.
        let judged: &[&str] = match policy.on_revoke {
            OnRevoke::Keep => &["-m", "conntrack", "--ctstate", "NEW"],
            OnRevoke::Cut => &[
                "-m",
                "conntrack",
                "--ctstate",
                "NEW,ESTABLISHED",
                "--ctdir",
                "ORIGINAL",
            ],
        };
        self.add(
            MANGLE,
            "FORWARD",
            0,
            args(judged, MARKER, &["-j", ENTRY_CHAIN]),
        );
        // Matching Docker's own bridge names judges traffic to a new network's containers
        // before dockgate has even heard of the network; custom names come from Docker's view.
        let mut bridge_names: Vec<&str> = docker::BRIDGE_PATTERNS.to_vec();
        for bridge in bridges {
            if !docker::is_docker_named(bridge) && !bridge_names.contains(&bridge.as_str()) {
                bridge_names.push(bridge);
            }
        }
        let to_judge = &["-j", JUDGE_CHAIN];
        let to_container = format!("{MARKER}:to-container");
        if policy.external_interfaces.is_empty() {
            // Everything that is not a Docker bridge counts as outside; traffic leaving a
            // container (egress, container to container) is never judged.
            let from_container = format!("{MARKER}:from-container");
            for bridge in &bridge_names {
                self.add(
                    MANGLE,
                    ENTRY_CHAIN,
                    0,
                    args(&["-i", bridge], &from_container, &["-j", "RETURN"]),
                );
                self.add(
                    MANGLE,
                    ENTRY_CHAIN,
                    1,
                    args(&["-o", bridge], &to_container, to_judge),
                );
            }
        } else {
            for interface in &policy.external_interfaces {
                for bridge in &bridge_names {
                    self.add(
                        MANGLE,
                        ENTRY_CHAIN,
                        1,
                        args(&["-i", interface, "-o", bridge], &to_container, to_judge),
                    );
                }
            }
        }
    }

    /// Every grant RETURNs the sources it lets in; what is left is recorded, then marked
    /// denied ([`Rules::record`], [`Rules::deny`]).
    fn judge(&mut self, policy: &Policy) {
        let allow = &["-j", "RETURN"];
        for grant in &policy.allows {
            let (targets, comment) = match (&grant.grant, grant.ports) {
                (Grant::Exposure(id), Some(ports)) => (
                    self.exposure_matches(grant, ports),
                    format!("{MARKER}:expose:{id}"),
                ),
                // Trusted sources reach every port.
                _ => (vec![Vec::new()], format!("{MARKER}:trusted")),
            };
            for mut matches in targets {
                if let Some(until) = grant.until {
                    matches.extend(["-m", "time", "--datestop"].map(str::to_owned));
                    matches.push(datestop(until));
                }
                for matcher in source_matchers(&grant.sources, self.family) {
                    let mut all: Vec<String> = matches.clone();
                    all.extend(matcher.args());
                    let all: Vec<&str> = all.iter().map(String::as_str).collect();
                    self.add(
                        MANGLE,
                        JUDGE_CHAIN,
                        ALLOW_PRIORITY,
                        args(&all, &comment, allow),
                    );
                }
            }
        }
    }

    /// What no grant let through, logged to the NFLOG group for dockgated's table: one rule
    /// per published port, so the prefix names the host port the client connected to (the
    /// packet itself carries the container's port after Docker's DNAT, the same for two host
    /// ports leading to one container port). New connections only, and rate-limited in the
    /// rule, so a flood costs the kernel and dockgated bounded work: past the limit the
    /// connection is refused all the same, only not counted. With "audit" this is all that
    /// happens to it.
    fn record(&mut self, policy: &Policy) {
        let mode = if policy.enforcing() { "deny" } else { "audit" };
        let rate = policy.refused.per_second.to_string();
        let per_second = format!("{rate}/second");
        let group = policy.refused.nflog_group.to_string();
        let v6 = self.family == Family::Ipv6;
        for recorded in policy.recorded.iter().filter(|recorded| recorded.v6 == v6) {
            let port = recorded.port.to_string();
            let protocol = recorded.protocol.as_str();
            let mut matches = vec![
                "-p",
                protocol,
                "-m",
                "conntrack",
                "--ctstate",
                "NEW",
                "-m",
                "conntrack",
            ];
            let routed = recorded.routed.map(|address| address.to_string());
            match &routed {
                Some(address) => matches.extend(["--ctorigdst", address.as_str()]),
                None => matches.extend(["--ctstate", "DNAT"]),
            }
            matches.extend([
                "--ctorigdstport",
                &port,
                "-m",
                "limit",
                "--limit",
                &per_second,
                "--limit-burst",
                &rate,
            ]);
            let prefix = format!("{RECORD_PREFIX}:{mode}:{port}/{protocol}");
            self.add(
                MANGLE,
                JUDGE_CHAIN,
                RECORD_PRIORITY,
                args(
                    &matches,
                    RECORD_COMMENT,
                    &[
                        "-j",
                        "NFLOG",
                        "--nflog-group",
                        &group,
                        "--nflog-prefix",
                        &prefix,
                    ],
                ),
            );
        }
    }

    /// What no grant let through is marked denied.
    fn deny(&mut self) {
        self.add(
            MANGLE,
            JUDGE_CHAIN,
            DENY_PRIORITY,
            args(
                &[],
                &format!("{MARKER}:deny"),
                &["-j", "MARK", "--set-xmark", DENY_MARK],
            ),
        );
    }

    /// What an exposure's rules match, one list per rule: its host ports, and the own address
    /// and port of each routed container it is bound to (of this family).
    fn exposure_matches(&self, grant: &Allow, ports: PortRange) -> Vec<Vec<String>> {
        let port = if ports.first == ports.last {
            ports.first.to_string()
        } else {
            format!("{}:{}", ports.first, ports.last)
        };
        let words = |words: &[&str]| words.iter().map(|word| (*word).to_owned()).collect();
        let mut targets: Vec<Vec<String>> = Vec::new();
        if grant.host_ports {
            // DNAT: only connections Docker forwarded from that host port. Where Docker lets
            // clients route straight to container addresses (gateway modes nat-unprotected
            // and routed, --allow-direct-routing, or Docker before 28 with a route to its
            // subnet), the original destination port of a direct connection is the
            // container's port, which may equal P.
            targets.push(words(&[
                "-p",
                ports.protocol.as_str(),
                "-m",
                "conntrack",
                "--ctstate",
                "DNAT",
                "--ctorigdstport",
                &port,
            ]));
        }
        // A routed container is reached at its own address: that address and port, and no
        // other container's.
        for address in grant
            .routed
            .iter()
            .filter(|address| self.family.matches(**address))
        {
            targets.push(words(&[
                "-p",
                ports.protocol.as_str(),
                "-m",
                "conntrack",
                "--ctorigdst",
                &address.to_string(),
                "--ctorigdstport",
                &port,
            ]));
        }
        targets
    }

    /// The start-up guard: only a new connection to a local address can meet Docker's DNAT.
    fn guard(&mut self) {
        let new_to_local = [
            "-m",
            "addrtype",
            "--dst-type",
            "LOCAL",
            "-m",
            "conntrack",
            "--ctstate",
            "NEW",
        ];
        self.add(
            MANGLE,
            "PREROUTING",
            0,
            args(
                &new_to_local,
                SEEN_COMMENT,
                &["-j", "MARK", "--set-xmark", SEEN_MARK],
            ),
        );
        let mut unseen = new_to_local.to_vec();
        unseen.extend(["-m", "mark", "!", "--mark", SEEN_MARK]);
        self.add(
            NAT,
            "PREROUTING",
            0,
            args(&unseen, UNJUDGED_COMMENT, &["-j", "ACCEPT"]),
        );
    }

    /// A marked packet is dropped in mangle POSTROUTING whatever happens in filter; with
    /// "reject" it is refused in filter first where it can be: in DOCKER-USER, reached while
    /// Docker keeps its jump there first (after a dockerd start), and in filter FORWARD
    /// itself, where firewalld inserts direct rules first and dockgate puts them back first
    /// once Docker's rebuild after a firewalld reload has pushed them behind its own ACCEPTs
    /// (Docker 20.10 re-adds its rules, and its DOCKER-USER jump, ahead of them; seen in the
    /// sandbox with firewalld 1.3).
    fn verdict(&mut self, verdict: Verdict, on_revoke: OnRevoke) {
        let marked = &["-m", "mark", "--mark", DENY_MARK];
        self.add(
            MANGLE,
            "POSTROUTING",
            0,
            args(marked, VERDICT_COMMENT, &["-j", "DROP"]),
        );
        if on_revoke == OnRevoke::Cut && verdict == Verdict::Drop {
            // A connection that is cut ends at once with a TCP reset rather than stalling
            // until the client gives up; "reject" below resets every marked TCP packet.
            self.add(
                FILTER,
                "FORWARD",
                0,
                args(
                    &[
                        "-m",
                        "mark",
                        "--mark",
                        DENY_MARK,
                        "-p",
                        "tcp",
                        "-m",
                        "conntrack",
                        "--ctstate",
                        "ESTABLISHED",
                    ],
                    VERDICT_COMMENT,
                    &["-j", "REJECT", "--reject-with", "tcp-reset"],
                ),
            );
        }
        if verdict == Verdict::Reject {
            self.plan
                .foreign_chains
                .insert(DirectChain::new(self.family, FILTER, DOCKER_USER));
            // A TCP reset, because Linux TCP takes an ICMPv6 port-unreachable as a soft error
            // and keeps trying until it times out (seen in the sandbox): over IPv6 only the
            // reset makes a client see "refused" at once. Everything else gets ICMP
            // port-unreachable.
            let mut tcp = marked.to_vec();
            tcp.extend(["-p", "tcp"]);
            for chain in [DOCKER_USER, "FORWARD"] {
                self.add(
                    FILTER,
                    chain,
                    0,
                    args(
                        &tcp,
                        VERDICT_COMMENT,
                        &["-j", "REJECT", "--reject-with", "tcp-reset"],
                    ),
                );
                self.add(
                    FILTER,
                    chain,
                    1,
                    args(marked, VERDICT_COMMENT, &["-j", "REJECT"]),
                );
            }
        }
    }
}

/// The time match's `--datestop` for a grant that ends at `until`: the last second it admits,
/// in UTC (the time match's default). The kernel compares whole seconds and matches up to and
/// including that second, so the first refused second is `until` itself.
pub fn datestop(until: u64) -> String {
    let last = std::time::UNIX_EPOCH + std::time::Duration::from_secs(until.saturating_sub(1));
    humantime::format_rfc3339_seconds(last)
        .to_string()
        .trim_end_matches('Z')
        .to_owned()
}

/// `matches.. -m comment --comment COMMENT target..`
fn args(matches: &[&str], comment: &str, target: &[&str]) -> Vec<String> {
    matches
        .iter()
        .copied()
        .chain(["-m", "comment", "--comment", comment])
        .chain(target.iter().copied())
        .map(str::to_owned)
        .collect()
}

/// How a list of sources is matched in one family: nothing to add for "any", one `-s` list for
/// every address and network (iptables makes a kernel rule per entry), one rule per range.
#[derive(Debug, PartialEq, Eq)]
enum SourceMatcher {
    Any,
    Networks(String),
    Range(IpAddr, IpAddr),
}

impl SourceMatcher {
    fn args(&self) -> Vec<String> {
        match self {
            SourceMatcher::Any => Vec::new(),
            SourceMatcher::Networks(list) => vec!["-s".to_owned(), list.clone()],
            SourceMatcher::Range(first, last) => vec![
                "-m".to_owned(),
                "iprange".to_owned(),
                "--src-range".to_owned(),
                format!("{first}-{last}"),
            ],
        }
    }
}

/// The matchers for the sources of one family; none when no source is of that family (then
/// nothing is allowed in it).
fn source_matchers(sources: &[Source], family: Family) -> Vec<SourceMatcher> {
    let v6 = family == Family::Ipv6;
    let sources: Vec<&Source> = sources
        .iter()
        .filter(|source| source.family_matches(v6))
        .collect();
    if sources.iter().any(|source| **source == Source::Any) {
        return vec![SourceMatcher::Any];
    }
    let networks: BTreeSet<String> = sources
        .iter()
        .filter_map(|source| match source {
            Source::Net(net) => Some(net.to_string()),
            _ => None,
        })
        .collect();
    let mut matchers = Vec::new();
    if !networks.is_empty() {
        matchers.push(SourceMatcher::Networks(
            networks.into_iter().collect::<Vec<_>>().join(","),
        ));
    }
    for source in sources {
        if let Source::Range(first, last) = source {
            matchers.push(SourceMatcher::Range(*first, *last));
        }
    }
    matchers
}

#[cfg(test)]
mod tests;
