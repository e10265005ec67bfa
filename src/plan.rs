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

use crate::config::{Config, DefaultPolicy, Exposure, Source, Verdict};
use crate::docker::PublishedPort;
use crate::rules::{DirectChain, DirectRule, Family};

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

const MANGLE: &str = "mangle";
const NAT: &str = "nat";
const FILTER: &str = "filter";
const DOCKER_USER: &str = "DOCKER-USER";

/// Bridges Docker names itself: docker0 and `br-<network id>`. Matching them by name judges
/// traffic to a new network's containers before dockgate has even heard of the network.
const DOCKER_BRIDGE_PATTERNS: [&str; 2] = ["docker0", "br-+"];

/// Allows sit before the deny mark; the gap leaves room for later kinds of rule.
const ALLOW_PRIORITY: i32 = 0;
const DENY_PRIORITY: i32 = 10;

/// An exposure together with the id callers know it by ("config-1" for the config's first
/// `[[expose]]`).
#[derive(Debug, Clone, Copy)]
pub struct Identified<'a> {
    pub id: &'a str,
    pub exposure: &'a Exposure,
}

/// The ids of the config's exposures: "config-1" is the first `[[expose]]`.
pub fn config_exposure_ids(config: &Config) -> Vec<String> {
    (1..=config.expose.len())
        .map(|n| format!("config-{n}"))
        .collect()
}

/// The config's exposures under the ids from [`config_exposure_ids`].
pub fn identify<'a>(ids: &'a [String], config: &'a Config) -> Vec<Identified<'a>> {
    ids.iter()
        .zip(&config.expose)
        .map(|(id, exposure)| Identified { id, exposure })
        .collect()
}

/// Docker's side of the world, as far as the plan needs it.
#[derive(Debug, Clone, Default)]
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

/// Whether an exposure is in force: a container-bound exposure only counts while that
/// container publishes the port.
pub fn in_force(exposure: &Exposure, ports: &[PublishedPort]) -> bool {
    match &exposure.container {
        None => true,
        Some(name) => ports.iter().any(|published| {
            &published.container == name
                && exposure
                    .port
                    .contains(published.host_port, published.protocol)
        }),
    }
}

/// The exposures in force (see [`in_force`]).
pub fn active<'a>(exposures: &[Identified<'a>], ports: &[PublishedPort]) -> Vec<Identified<'a>> {
    exposures
        .iter()
        .filter(|entry| in_force(entry.exposure, ports))
        .copied()
        .collect()
}

pub fn plan(config: &Config, exposures: &[Identified<'_>], docker: &DockerView) -> Plan {
    let mut plan = Plan::default();
    if config.default == DefaultPolicy::Allow {
        // Docker's own behaviour: dockgate only reports.
        return plan;
    }
    let active = active(exposures, &docker.ports);
    for family in Family::ALL {
        plan_family(&mut plan, family, config, &active, &docker.bridges);
    }
    plan
}

fn plan_family(
    plan: &mut Plan,
    family: Family,
    config: &Config,
    exposures: &[Identified<'_>],
    bridges: &[String],
) {
    for chain in [ENTRY_CHAIN, JUDGE_CHAIN] {
        plan.chains.insert(DirectChain::new(family, MANGLE, chain));
    }
    let rule = |table: &str, chain: &str, priority: i32, args: Vec<String>| DirectRule {
        family,
        table: table.to_owned(),
        chain: chain.to_owned(),
        priority,
        args,
    };

    plan.rules.insert(rule(
        MANGLE,
        "FORWARD",
        0,
        args(
            &["-m", "conntrack", "--ctstate", "NEW"],
            MARKER,
            &["-j", ENTRY_CHAIN],
        ),
    ));

    let mut bridge_names: Vec<&str> = DOCKER_BRIDGE_PATTERNS.to_vec();
    for bridge in bridges {
        if bridge != "docker0" && !bridge.starts_with("br-") && !bridge_names.contains(&&**bridge) {
            bridge_names.push(bridge);
        }
    }
    let to_judge = &["-j", JUDGE_CHAIN];
    let to_container = format!("{MARKER}:to-container");
    if config.external_interfaces.is_empty() {
        // Everything that is not a Docker bridge counts as outside; traffic leaving a
        // container (egress, container to container) is never judged.
        let from_container = format!("{MARKER}:from-container");
        for bridge in &bridge_names {
            plan.rules.insert(rule(
                MANGLE,
                ENTRY_CHAIN,
                0,
                args(&["-i", bridge], &from_container, &["-j", "RETURN"]),
            ));
            plan.rules.insert(rule(
                MANGLE,
                ENTRY_CHAIN,
                1,
                args(&["-o", bridge], &to_container, to_judge),
            ));
        }
    } else {
        for interface in &config.external_interfaces {
            for bridge in &bridge_names {
                plan.rules.insert(rule(
                    MANGLE,
                    ENTRY_CHAIN,
                    1,
                    args(&["-i", interface, "-o", bridge], &to_container, to_judge),
                ));
            }
        }
    }

    let allow = &["-j", "RETURN"];
    let trusted = format!("{MARKER}:trusted");
    for matcher in source_matchers(&config.trusted, family) {
        let source = matcher.args();
        let source: Vec<&str> = source.iter().map(String::as_str).collect();
        plan.rules.insert(rule(
            MANGLE,
            JUDGE_CHAIN,
            ALLOW_PRIORITY,
            args(&source, &trusted, allow),
        ));
    }
    for entry in exposures {
        let exposure = entry.exposure;
        let port = if exposure.port.first == exposure.port.last {
            exposure.port.first.to_string()
        } else {
            format!("{}:{}", exposure.port.first, exposure.port.last)
        };
        let protocol = exposure.port.protocol.as_str();
        let comment = format!("{MARKER}:expose:{}", entry.id);
        for matcher in source_matchers(&exposure.from, family) {
            let mut matches = vec!["-p", protocol, "-m", "conntrack", "--ctorigdstport", &port];
            let source = matcher.args();
            matches.extend(source.iter().map(String::as_str));
            plan.rules.insert(rule(
                MANGLE,
                JUDGE_CHAIN,
                ALLOW_PRIORITY,
                args(&matches, &comment, allow),
            ));
        }
    }
    plan.rules.insert(rule(
        MANGLE,
        JUDGE_CHAIN,
        DENY_PRIORITY,
        args(
            &[],
            &format!("{MARKER}:deny"),
            &["-j", "MARK", "--set-xmark", DENY_MARK],
        ),
    ));

    // The start-up guard: only a new connection to a local address can meet Docker's DNAT.
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
    plan.rules.insert(rule(
        MANGLE,
        "PREROUTING",
        0,
        args(
            &new_to_local,
            SEEN_COMMENT,
            &["-j", "MARK", "--set-xmark", SEEN_MARK],
        ),
    ));
    let mut unseen = new_to_local.to_vec();
    unseen.extend(["-m", "mark", "!", "--mark", SEEN_MARK]);
    plan.rules.insert(rule(
        NAT,
        "PREROUTING",
        0,
        args(&unseen, UNJUDGED_COMMENT, &["-j", "ACCEPT"]),
    ));

    let marked = &["-m", "mark", "--mark", DENY_MARK];
    let verdict = format!("{MARKER}:verdict");
    plan.rules.insert(rule(
        MANGLE,
        "POSTROUTING",
        0,
        args(marked, &verdict, &["-j", "DROP"]),
    ));
    if config.verdict == Verdict::Reject {
        plan.foreign_chains
            .insert(DirectChain::new(family, FILTER, DOCKER_USER));
        // A TCP reset, because Linux TCP takes an ICMPv6 port-unreachable as a soft error and
        // keeps trying until it times out (seen in the sandbox): over IPv6 only the reset
        // makes a client see "refused" at once. Everything else gets ICMP port-unreachable.
        let mut tcp = marked.to_vec();
        tcp.extend(["-p", "tcp"]);
        plan.rules.insert(rule(
            FILTER,
            DOCKER_USER,
            0,
            args(
                &tcp,
                &verdict,
                &["-j", "REJECT", "--reject-with", "tcp-reset"],
            ),
        ));
        plan.rules.insert(rule(
            FILTER,
            DOCKER_USER,
            1,
            args(marked, &verdict, &["-j", "REJECT"]),
        ));
    }
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
