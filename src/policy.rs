//! The one answer to "does a new connection from outside, from this source to this published
//! port, get through, and why". The rule plan is built from [`Policy::allows`]; Explain,
//! ListPorts, `dockgatectl ports` and `dockgated inspect` all answer with [`judge`] and
//! [`access`]. Nothing else decides: a test runs the planned rules themselves against these
//! answers (`plan::agreement`). Pure: no I/O.
//!
//! What a published port is judged by depends on how Docker serves it:
//! - bound to a loopback address: no other host can reach it (the kernel drops packets from
//!   outside addressed to 127.0.0.0/8 or ::1);
//! - the container has an address of the port's family: Docker DNATs the connection and
//!   dockgate's rules judge it in mangle FORWARD;
//! - the container has none (IPv6 published, container without IPv6): docker-proxy serves the
//!   port on the host, so firewalld's zone judges the connection like any host port.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

use crate::config::{
    Config, DefaultPolicy, Exposure, OnRevoke, PortRange, Refused, Source, Verdict,
};
use crate::docker::{Protocol, PublishedPort};
use crate::exposures::{Listed, Origin};

/// Whether an exposure is in force: a container-bound exposure only counts while that
/// container publishes a port in its range.
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

/// Why sources get in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// The config's `trusted` list: every published port.
    Trusted,
    /// The exposure with this id.
    Exposure(String),
}

/// Sources let in by one grant: to every published port (trusted) or to one port range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allow {
    pub grant: Grant,
    /// None: every port.
    pub ports: Option<PortRange>,
    pub sources: Vec<Source>,
    /// The first wall-clock second (Unix) it no longer admits: a time-limited exposure's end,
    /// which its rules carry, so that the kernel ends it whether dockgated runs or not.
    pub until: Option<u64>,
    /// Whether it covers host ports, which Docker DNATs (or docker-proxy serves): trusted
    /// sources and exposures do, except one bound to a container that publishes the port only
    /// on a network in gateway mode "routed".
    pub host_ports: bool,
    /// The routed containers' addresses it covers: an exposure bound to a container whose
    /// network is in gateway mode "routed" names the container's own port there.
    pub routed: Vec<IpAddr>,
}

impl Allow {
    /// Whether it covers host port `port` (DNAT or docker-proxy).
    pub fn covers(&self, port: u16, protocol: Protocol) -> bool {
        self.host_ports
            && self
                .ports
                .is_none_or(|ports| ports.contains(port, protocol))
    }

    /// Whether it covers this published port: a host port, or a routed container's own
    /// address and port. Trusted sources reach every one.
    pub fn reaches(&self, port: &PublishedPort) -> bool {
        if !port.routed {
            return self.covers(port.host_port, port.protocol);
        }
        match self.ports {
            None => true,
            Some(ports) => {
                ports.contains(port.host_port, port.protocol) && self.routed.contains(&port.host_ip)
            }
        }
    }

    /// The first of the sources that lets `address` in.
    pub fn admitting(&self, address: IpAddr) -> Option<&Source> {
        self.sources
            .iter()
            .find(|source| source_contains(source, address))
    }
}

/// Whether `source` lets `address` in.
pub fn source_contains(source: &Source, address: IpAddr) -> bool {
    match source {
        Source::Any => true,
        Source::Net(net) => net.contains(&address),
        Source::Range(first, last) => {
            first.is_ipv6() == address.is_ipv6() && *first <= address && address <= *last
        }
    }
}

/// Whether a source lets every address of a family in.
fn is_everyone(source: &Source, v6: bool) -> bool {
    match source {
        Source::Any => true,
        Source::Net(net) => net.prefix_len() == 0 && net.addr().is_ipv6() == v6,
        Source::Range(..) => false,
    }
}

/// The policy in force: who counts as outside, what happens to what is denied, and every
/// grant, in the order the judging chain checks them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub default: DefaultPolicy,
    pub verdict: Verdict,
    /// Whether a connection ends with the grant that admitted it.
    pub on_revoke: OnRevoke,
    /// Empty: every interface that is not a Docker bridge.
    pub external_interfaces: Vec<String>,
    /// The trusted sources, then every exposure in force.
    pub allows: Vec<Allow>,
    /// Where and how fast refused connections are recorded.
    pub refused: Refused,
    /// The published ports dockgate's rules judge, each recorded apart when refused.
    pub recorded: BTreeSet<Recorded>,
}

/// A published port as the recording rules name it: the host port a client connects to (with
/// Docker's DNAT), or a routed container's own address and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Recorded {
    pub port: u16,
    pub protocol: Protocol,
    pub v6: bool,
    /// A routed container's address; None: a host port Docker DNATs.
    pub routed: Option<IpAddr>,
}

impl Policy {
    pub fn new(config: &Config, exposures: &[Listed], ports: &[PublishedPort]) -> Policy {
        let trusted = (!config.trusted.is_empty()).then(|| Allow {
            grant: Grant::Trusted,
            ports: None,
            sources: config.trusted.clone(),
            until: None,
            host_ports: true,
            routed: Vec::new(),
        });
        let exposed = exposures
            .iter()
            .filter(|listed| in_force(&listed.exposure, ports))
            .map(|listed| {
                let exposure = &listed.exposure;
                // The bound container's ports in the range, host ports and routed ones apart.
                let bound: Vec<&PublishedPort> = ports
                    .iter()
                    .filter(|port| {
                        exposure.container.as_ref() == Some(&port.container)
                            && exposure.port.contains(port.host_port, port.protocol)
                    })
                    .collect();
                Allow {
                    grant: Grant::Exposure(listed.id.clone()),
                    ports: Some(exposure.port),
                    sources: exposure.from.clone(),
                    until: match listed.origin {
                        Origin::Runtime { expires_at, .. } if expires_at != 0 => Some(expires_at),
                        _ => None,
                    },
                    host_ports: exposure.container.is_none()
                        || bound.iter().any(|port| !port.routed),
                    routed: bound
                        .iter()
                        .filter(|port| port.routed)
                        .map(|port| port.host_ip)
                        .collect(),
                }
            });
        Policy {
            default: config.default,
            verdict: config.verdict,
            on_revoke: config.on_revoke,
            external_interfaces: config.external_interfaces.clone(),
            allows: trusted.into_iter().chain(exposed).collect(),
            refused: config.refused,
            recorded: ports
                .iter()
                .filter(|port| matches!(serving(port), Serving::Dnat | Serving::Routed))
                .map(|port| Recorded {
                    port: port.host_port,
                    protocol: port.protocol,
                    v6: port.host_ip.is_ipv6(),
                    routed: port.routed.then_some(port.host_ip),
                })
                .collect(),
        }
    }

    /// Whether what no grant admits is refused: `default = "deny"`.
    pub fn enforcing(&self) -> bool {
        self.default == DefaultPolicy::Deny
    }

    /// Whether dockgate's rules judge published ports at all: with "deny" to refuse, with
    /// "audit" to record what "deny" would refuse. With "allow" dockgate only reports.
    pub fn judging(&self) -> bool {
        self.default != DefaultPolicy::Allow
    }

    /// The first grant letting `address` reach host port `port`, with the source that did.
    pub fn grant_for(
        &self,
        address: IpAddr,
        port: u16,
        protocol: Protocol,
    ) -> Option<(&Grant, &Source)> {
        self.allows
            .iter()
            .filter(|allow| allow.covers(port, protocol))
            .find_map(|allow| Some((&allow.grant, allow.admitting(address)?)))
    }

    /// The first grant letting `address` reach this published port, with the source that did.
    pub fn grant_to(&self, address: IpAddr, port: &PublishedPort) -> Option<(&Grant, &Source)> {
        self.allows
            .iter()
            .filter(|allow| allow.reaches(port))
            .find_map(|allow| Some((&allow.grant, allow.admitting(address)?)))
    }
}

/// What firewalld does with connections to the host itself: where docker-proxy serves a port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HostZones {
    /// The zone of every interface and source not bound to another zone.
    pub default_zone: String,
    /// The zones that can judge a connection from outside: the default one and every zone
    /// with an interface or a source bound to it.
    pub zones: BTreeMap<String, ZoneView>,
    /// firewalld >= 2.3 with StrictForwardPorts=yes: DNAT that firewalld did not create itself
    /// (Docker's) is refused, unless a forward-port with a destination address names the
    /// original port (in any zone: firewalld's check is the port alone).
    pub strict_forward_ports: bool,
    /// The ports (first, last) such forward-ports name.
    pub forwarded: Vec<(u16, u16)>,
}

/// What one zone lets in to the host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ZoneView {
    pub target: String,
    /// Ports the zone opens, with what opens each ("port 8080/tcp", "service http").
    pub open: Vec<(PortRange, String)>,
    pub sources: Vec<IpNet>,
    pub interfaces: Vec<String>,
}

impl HostZones {
    /// Whether firewalld's StrictForwardPorts refuses Docker's DNAT to this host port.
    pub fn strict_refuses(&self, port: u16) -> bool {
        self.strict_forward_ports
            && !self
                .forwarded
                .iter()
                .any(|(first, last)| (*first..=*last).contains(&port))
    }

    /// The zone that judges a connection from `source` arriving from outside: a zone the source
    /// is bound to, else the zone of the first external interface bound to one, else the
    /// default zone (where an interface bound to none belongs).
    pub fn zone_for(&self, source: IpAddr, external_interfaces: &[String]) -> &str {
        self.zones
            .iter()
            .find(|(_, zone)| zone.sources.iter().any(|net| net.contains(&source)))
            .map_or_else(
                || self.interface_zone(external_interfaces),
                |(name, _)| name,
            )
    }

    /// The zone of a connection from a source bound to no zone.
    pub fn interface_zone(&self, external_interfaces: &[String]) -> &str {
        external_interfaces
            .iter()
            .find_map(|interface| {
                self.zones
                    .iter()
                    .find(|(_, zone)| zone.interfaces.contains(interface))
                    .map(|(name, _)| name.as_str())
            })
            .unwrap_or(&self.default_zone)
    }

    /// What in `zone` lets a new connection to host port `port` in, if anything does.
    pub fn opened_by(&self, zone: &str, port: u16, protocol: Protocol) -> Option<String> {
        let view = self.zones.get(zone)?;
        if view.target == "ACCEPT" {
            return Some("target ACCEPT".to_owned());
        }
        view.open
            .iter()
            .find(|(range, _)| range.contains(port, protocol))
            .map(|(_, what)| what.clone())
    }
}

/// Why a connection gets through or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// No published port matches; `then` is what the policy would say once one does.
    NotPublished {
        port: PortRange,
        v6: bool,
        then: Box<Reason>,
    },
    LoopbackOnly {
        port: PortRange,
        host_ip: IpAddr,
    },
    StrictForwardPorts,
    DefaultAllow,
    /// `default = "audit"`: no grant admits the source, so "deny" would refuse it; it gets in
    /// and is recorded.
    Audited {
        port: PortRange,
    },
    Granted {
        grant: Grant,
        source: Source,
    },
    /// Nothing lets the source in: the verdict ends it.
    Denied {
        port: PortRange,
        verdict: Verdict,
    },
    /// docker-proxy serves the port on the host: the zone decides.
    Zone {
        zone: String,
        opened_by: Option<String>,
    },
    /// docker-proxy serves the port, and firewalld's zones could not be read.
    ZoneUnknown,
    /// Ports on several host addresses (or a range) that do not all agree, each named.
    Mixed(String),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NotPublished { port, v6, then } => write!(
                f,
                "no container publishes {port} for IPv{} now (once one does: {then})",
                if *v6 { 6 } else { 4 }
            ),
            Reason::LoopbackOnly { port, host_ip } => write!(
                f,
                "{port} is published on {host_ip} only: no other host can reach it"
            ),
            Reason::StrictForwardPorts => f.write_str(
                "firewalld's StrictForwardPorts=yes refuses Docker's forwarding of this port: no \
                 forward-port names it (dockgate keeps one only for the ports its policy lets \
                 some source reach)",
            ),
            Reason::DefaultAllow => {
                f.write_str("default = \"allow\": dockgate lets everything through")
            }
            Reason::Audited { port } => write!(
                f,
                "open, audited: no trusted source and no exposure of {port} lets it in, so \
                 default = \"deny\" would refuse it; default = \"audit\" lets it in and records it"
            ),
            Reason::Granted {
                grant: Grant::Trusted,
                source,
            } => write!(f, "trusted source {source}"),
            Reason::Granted {
                grant: Grant::Exposure(id),
                ..
            } => write!(f, "exposure {id}"),
            Reason::Denied { port, verdict } => write!(
                f,
                "no trusted source and no exposure of {port} lets it in: verdict {verdict}"
            ),
            Reason::Zone {
                zone,
                opened_by: Some(what),
            } => write!(f, "served by docker-proxy on the host: zone {zone} lets it in ({what})"),
            Reason::Zone {
                zone,
                opened_by: None,
            } => write!(
                f,
                "served by docker-proxy on the host: zone {zone} does not open the port"
            ),
            Reason::ZoneUnknown => f.write_str(
                "served by docker-proxy on the host: firewalld's zones decide, and they could not be read",
            ),
            Reason::Mixed(text) => f.write_str(text),
        }
    }
}

/// The answer for one new connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    pub allowed: bool,
    pub reason: Reason,
}

/// How Docker serves a published port, which decides who judges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serving {
    LoopbackOnly,
    /// DNAT to the container: dockgate's rules judge.
    Dnat,
    /// docker-proxy on the host: firewalld's zone judges.
    Proxy,
    /// Gateway mode "routed": clients reach the container's own address; dockgate's rules
    /// judge (no DNAT, so firewalld's StrictForwardPorts has nothing to say).
    Routed,
}

pub fn serving(port: &PublishedPort) -> Serving {
    if port.is_loopback_only() {
        Serving::LoopbackOnly
    } else if port.routed {
        Serving::Routed
    } else if port.container_ip.is_none() {
        Serving::Proxy
    } else {
        Serving::Dnat
    }
}

/// Would a new connection from `source`, arriving from outside, to this published port get
/// through, and why. `source` must be of the port's family (an IPv4 source cannot reach a
/// port published on ::).
pub fn judge(
    policy: &Policy,
    zones: Option<&HostZones>,
    port: &PublishedPort,
    source: IpAddr,
) -> Judgement {
    let range = PortRange {
        first: port.host_port,
        last: port.host_port,
        protocol: port.protocol,
    };
    let (allowed, reason) = match serving(port) {
        Serving::LoopbackOnly => (
            false,
            Reason::LoopbackOnly {
                port: range,
                host_ip: port.host_ip,
            },
        ),
        Serving::Proxy => match zones {
            None => (false, Reason::ZoneUnknown),
            Some(zones) => {
                let zone = zones.zone_for(source, &policy.external_interfaces);
                let opened_by = zones.opened_by(zone, port.host_port, port.protocol);
                (
                    opened_by.is_some(),
                    Reason::Zone {
                        zone: zone.to_owned(),
                        opened_by,
                    },
                )
            }
        },
        Serving::Dnat if zones.is_some_and(|zones| zones.strict_refuses(port.host_port)) => {
            (false, Reason::StrictForwardPorts)
        }
        Serving::Routed | Serving::Dnat if !policy.judging() => (true, Reason::DefaultAllow),
        Serving::Routed | Serving::Dnat => match policy.grant_to(source, port) {
            Some((grant, admitting)) => (
                true,
                Reason::Granted {
                    grant: grant.clone(),
                    source: *admitting,
                },
            ),
            None => (!policy.enforcing(), ungranted(policy, range)),
        },
    };
    Judgement { allowed, reason }
}

/// Why a source no grant admits gets what it gets: the verdict, or in audit mode in and recorded.
fn ungranted(policy: &Policy, port: PortRange) -> Reason {
    if policy.enforcing() {
        Reason::Denied {
            port,
            verdict: policy.verdict,
        }
    } else {
        Reason::Audited { port }
    }
}

/// Explain: would a new connection from `source` to host port(s) `wanted` get through. Every
/// published port of the source's family in the range is judged; when they do not all agree,
/// the answer names each host address, and it is "allowed" if any lets the source in.
pub fn explain(
    policy: &Policy,
    zones: Option<&HostZones>,
    ports: &[PublishedPort],
    source: IpAddr,
    wanted: PortRange,
) -> Judgement {
    let judged: Vec<(&PublishedPort, Judgement)> = ports
        .iter()
        .filter(|port| {
            wanted.contains(port.host_port, port.protocol)
                && port.host_ip.is_ipv6() == source.is_ipv6()
        })
        .map(|port| (port, judge(policy, zones, port, source)))
        .collect();
    let Some((_, first)) = judged.first() else {
        // What a port DNATed to a container would get, for the admin who asks before
        // starting it.
        let then = if !policy.judging() {
            Reason::DefaultAllow
        } else {
            match policy.grant_for(source, wanted.first, wanted.protocol) {
                Some((grant, admitting)) => Reason::Granted {
                    grant: grant.clone(),
                    source: *admitting,
                },
                None => ungranted(policy, wanted),
            }
        };
        return Judgement {
            allowed: false,
            reason: Reason::NotPublished {
                port: wanted,
                v6: source.is_ipv6(),
                then: Box::new(then),
            },
        };
    };
    if judged.iter().all(|(_, judgement)| judgement == first) {
        return first.clone();
    }
    // Disagreeing answers (ports on different host addresses, or a range): each one, named.
    let text = judged
        .iter()
        .map(|(port, judgement)| {
            format!(
                "{}:{}/{} {}: {}",
                port.host_ip,
                port.host_port,
                port.protocol,
                if judgement.allowed {
                    "allowed"
                } else {
                    "denied"
                },
                judgement.reason
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    Judgement {
        allowed: judged.iter().any(|(_, judgement)| judgement.allowed),
        reason: Reason::Mixed(text),
    }
}

/// Who may reach a published port from other hosts, as ListPorts reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Denied,
    TrustedOnly,
    Exposed,
    Open,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Denied => "denied",
            State::TrustedOnly => "trusted-only",
            State::Exposed => "exposed",
            State::Open => "open",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One published port's answer for every source at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Access {
    pub state: State,
    /// The sources that get in (of the port's family), or "any".
    pub sources: Vec<String>,
    /// "dockgate", or "zone NAME" where docker-proxy serves the port on the host.
    pub judged_by: String,
    /// `default = "audit"` lets in sources that "deny" would refuse, and records them.
    pub audited: bool,
}

/// Who may reach one published port from outside: the same answer as [`judge`], for every
/// source at once.
pub fn access(policy: &Policy, zones: Option<&HostZones>, port: &PublishedPort) -> Access {
    let v6 = port.host_ip.is_ipv6();
    let dockgate = || "dockgate".to_owned();
    let everyone = || vec!["any".to_owned()];
    match serving(port) {
        Serving::LoopbackOnly => Access {
            state: State::Denied,
            sources: Vec::new(),
            judged_by: dockgate(),
            audited: false,
        },
        Serving::Proxy => {
            let Some(zones) = zones else {
                return Access {
                    state: State::Denied,
                    sources: Vec::new(),
                    judged_by: "zone (unknown)".to_owned(),
                    audited: false,
                };
            };
            let zone = zones.interface_zone(&policy.external_interfaces);
            let opens = |name: &str| {
                zones
                    .opened_by(name, port.host_port, port.protocol)
                    .is_some()
            };
            // Sources bound to a zone that opens the port get in even where the interface's
            // zone does not open it.
            let bound: Vec<String> = zones
                .zones
                .iter()
                .filter(|(name, _)| opens(name))
                .flat_map(|(_, view)| &view.sources)
                .filter(|net| net.addr().is_ipv6() == v6)
                .map(|net| Source::Net(*net).to_string())
                .collect();
            let (state, sources) = if opens(zone) {
                (State::Open, everyone())
            } else if !bound.is_empty() {
                (State::Exposed, bound)
            } else {
                (State::Denied, Vec::new())
            };
            Access {
                state,
                sources,
                judged_by: format!("zone {zone}"),
                audited: false,
            }
        }
        Serving::Dnat if zones.is_some_and(|zones| zones.strict_refuses(port.host_port)) => {
            Access {
                state: State::Denied,
                sources: Vec::new(),
                judged_by: dockgate(),
                audited: false,
            }
        }
        Serving::Routed | Serving::Dnat if !policy.judging() => Access {
            state: State::Open,
            sources: everyone(),
            judged_by: dockgate(),
            audited: false,
        },
        Serving::Routed | Serving::Dnat => {
            let mut sources = Vec::new();
            let (mut open, mut exposed) = (false, false);
            for allow in policy.allows.iter().filter(|allow| allow.reaches(port)) {
                for source in allow.sources.iter().filter(|s| s.family_matches(v6)) {
                    open |= is_everyone(source, v6);
                    exposed |= matches!(allow.grant, Grant::Exposure(_));
                    let text = source.to_string();
                    if !sources.contains(&text) {
                        sources.push(text);
                    }
                }
            }
            let state = if open {
                // Every source: the others listed add nothing.
                sources = everyone();
                State::Open
            } else if exposed {
                State::Exposed
            } else if !sources.is_empty() {
                State::TrustedOnly
            } else {
                State::Denied
            };
            if !policy.enforcing() && state != State::Open {
                // Audit: everyone gets in, and those no grant names are recorded.
                return Access {
                    state: State::Open,
                    sources: everyone(),
                    judged_by: dockgate(),
                    audited: true,
                };
            }
            Access {
                state,
                sources,
                judged_by: dockgate(),
                audited: false,
            }
        }
    }
}

#[cfg(test)]
mod tests;
