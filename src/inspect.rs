//! `dockgated inspect`: what dockgate sees, read-only. firewalld, the zones of Docker's bridges,
//! the published ports and whether each is reachable from outside today, and the direct rules
//! in DOCKER-USER.

use std::fmt::Write as _;

use comfy_table::{Table, presets::NOTHING};
use serde::Serialize;

use crate::docker::{Docker, PublishedPort};
use crate::firewalld::{DOCKER_USER, DirectRule, Firewalld, FirewalldInfo, Layer};

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub firewalld: Readout<FirewalldInfo>,
    pub docker: Readout<DockerInfo>,
    pub bridges: Vec<Bridge>,
    pub ports: Vec<PortReport>,
    /// Direct rules (runtime) in DOCKER-USER, both families. Rules put there with iptables
    /// behind firewalld's back cannot be seen over D-Bus and are not listed.
    pub docker_user_rules: Vec<DirectRule>,
}

/// What could be read from a daemon, or why not; in JSON either the value or `{"error": ...}`.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Readout<T> {
    Read(T),
    Unreadable { error: String },
}

impl<T> Readout<T> {
    fn from_result<E: std::fmt::Display>(result: Result<T, E>) -> Self {
        match result {
            Ok(value) => Readout::Read(value),
            Err(error) => Readout::Unreadable {
                error: error.to_string(),
            },
        }
    }

    fn as_ref(&self) -> Option<&T> {
        match self {
            Readout::Read(value) => Some(value),
            Readout::Unreadable { .. } => None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DockerInfo {
    pub version: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Bridge {
    pub network: String,
    pub bridge: String,
    /// The runtime zone the bridge is bound to; None when in none or firewalld is down.
    pub zone: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PortReport {
    #[serde(flatten)]
    pub port: PublishedPort,
    pub outside: Reachability,
}

/// How a published port looks from another host today.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reachability {
    /// Docker's DNAT takes it past every zone: any source on any interface gets in.
    Open,
    /// Bound to a loopback address: other hosts cannot reach it.
    LoopbackOnly,
    /// The container has no address of this family, so Docker serves the port with
    /// docker-proxy on the host itself: firewalld's zones judge it like any host port.
    ViaProxy,
    /// firewalld >= 2.3 with StrictForwardPorts=yes drops DNAT it did not create itself.
    BlockedByStrictForwardPorts,
    /// DOCKER-USER has direct rules for this family; whether they let a source in depends on
    /// them (dockgate's own policy explains itself once it manages the port).
    Filtered,
    /// firewalld could not be read, so nothing can be said.
    Unknown,
}

impl Reachability {
    fn describe(self) -> &'static str {
        match self {
            Reachability::Open => "OPEN to every source",
            Reachability::LoopbackOnly => "loopback only",
            Reachability::ViaProxy => "via docker-proxy: zones decide",
            Reachability::BlockedByStrictForwardPorts => "blocked (StrictForwardPorts=yes)",
            Reachability::Filtered => "filtered by DOCKER-USER rules",
            Reachability::Unknown => "unknown (firewalld not readable)",
        }
    }
}

/// Pure: decides how one published port is reachable from firewalld's settings and the direct
/// rules in DOCKER-USER.
pub fn assess(
    port: &PublishedPort,
    firewalld: Option<&FirewalldInfo>,
    docker_user_rules: &[DirectRule],
) -> Reachability {
    if port.is_loopback_only() {
        return Reachability::LoopbackOnly;
    }
    if port.container_ip.is_none() {
        return Reachability::ViaProxy;
    }
    let Some(firewalld) = firewalld else {
        return Reachability::Unknown;
    };
    if firewalld.strict_forward_ports == Some(true) {
        return Reachability::BlockedByStrictForwardPorts;
    }
    let family_filtered = docker_user_rules
        .iter()
        .any(|rule| rule.family.matches(port.host_ip) && !is_plain_return(rule));
    if family_filtered {
        Reachability::Filtered
    } else {
        Reachability::Open
    }
}

fn is_plain_return(rule: &DirectRule) -> bool {
    rule.args == ["-j", "RETURN"]
}

impl Report {
    /// Reads everything it can; a daemon that is down shows up as an error in its field.
    pub async fn gather(firewalld: &Firewalld, docker: &Docker) -> Report {
        // Without the rules nothing can be said about reachability, so a failure to read them
        // counts as firewalld being unreadable.
        let firewalld_state = match firewalld.info().await {
            Ok(info) => firewalld
                .rules(Layer::Runtime)
                .await
                .map(|rules| (info, rules)),
            Err(error) => Err(error),
        };
        let (info, docker_user_rules) = match firewalld_state {
            Ok((info, rules)) => (
                Readout::Read(info),
                rules
                    .into_iter()
                    .filter(|rule| rule.table == "filter" && rule.chain == DOCKER_USER)
                    .collect(),
            ),
            Err(error) => (
                Readout::from_result(Err::<FirewalldInfo, _>(error)),
                Vec::new(),
            ),
        };
        // Likewise an empty list of ports must mean none, never "could not read them".
        let docker_state = async {
            let version = docker.version().await?;
            let networks = docker.networks().await?;
            let ports = docker.published_ports().await?;
            Ok::<_, crate::docker::DockerError>((version, networks, ports))
        }
        .await;
        let (docker_info, networks, ports) = match docker_state {
            Ok((version, networks, ports)) => {
                (Readout::Read(DockerInfo { version }), networks, ports)
            }
            Err(error) => (
                Readout::from_result(Err::<DockerInfo, _>(error)),
                Vec::new(),
                Vec::new(),
            ),
        };
        let mut bridges = Vec::new();
        for network in networks {
            let Some(bridge) = network.bridge else {
                continue;
            };
            let zone = match info.as_ref() {
                Some(_) => firewalld.zone_of_interface(&bridge).await.ok().flatten(),
                None => None,
            };
            bridges.push(Bridge {
                network: network.name,
                bridge,
                zone,
            });
        }
        let ports = ports
            .into_iter()
            .map(|port| PortReport {
                outside: assess(&port, info.as_ref(), &docker_user_rules),
                port,
            })
            .collect();
        Report {
            firewalld: info,
            docker: docker_info,
            bridges,
            ports,
            docker_user_rules,
        }
    }

    /// Everything could be read.
    pub fn is_complete(&self) -> bool {
        self.firewalld.as_ref().is_some() && self.docker.as_ref().is_some()
    }

    pub fn render_text(&self) -> String {
        let mut out = String::new();
        match &self.firewalld {
            Readout::Read(info) => {
                let _ = writeln!(
                    out,
                    "firewalld {} (backend {}, default zone {}{})",
                    info.version,
                    info.backend,
                    info.default_zone,
                    match info.strict_forward_ports {
                        Some(true) => ", StrictForwardPorts=yes",
                        Some(false) => ", StrictForwardPorts=no",
                        None => "",
                    }
                );
            }
            Readout::Unreadable { error } => {
                let _ = writeln!(out, "firewalld: {error}");
            }
        }
        match &self.docker {
            Readout::Read(docker) => {
                let _ = writeln!(out, "Docker {}", docker.version);
            }
            Readout::Unreadable { error } => {
                let _ = writeln!(out, "Docker: {error}");
            }
        }

        out.push_str("\nBridges of Docker's networks\n");
        let mut bridges = plain_table(["NETWORK", "BRIDGE", "ZONE"]);
        for bridge in &self.bridges {
            bridges.add_row([
                bridge.network.as_str(),
                bridge.bridge.as_str(),
                bridge.zone.as_deref().unwrap_or("(none)"),
            ]);
        }
        let _ = writeln!(out, "{bridges}");

        out.push_str("\nPublished ports\n");
        if self.ports.is_empty() {
            out.push_str("  (none)\n");
        } else {
            let mut ports = plain_table(["CONTAINER", "HOST", "PROTO", "TO", "FROM OUTSIDE"]);
            for report in &self.ports {
                let port = &report.port;
                let target = match port.container_ip {
                    Some(ip) => socket(ip, port.container_port),
                    None => format!("?:{}", port.container_port),
                };
                ports.add_row([
                    port.container.clone(),
                    socket(port.host_ip, port.host_port),
                    port.protocol.to_string(),
                    target,
                    report.outside.describe().to_owned(),
                ]);
            }
            let _ = writeln!(out, "{ports}");
        }

        out.push_str("\nDirect rules in DOCKER-USER (runtime)\n");
        if self.docker_user_rules.is_empty() {
            out.push_str("  (none: nothing filters published ports)\n");
        } else {
            let mut rules = plain_table(["FAMILY", "PRIORITY", "RULE"]);
            for rule in &self.docker_user_rules {
                rules.add_row([
                    rule.family.to_string(),
                    rule.priority.to_string(),
                    rule.args.join(" "),
                ]);
            }
            let _ = writeln!(out, "{rules}");
        }
        out
    }
}

fn socket(ip: std::net::IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(ip, port).to_string()
}

fn plain_table<const N: usize>(header: [&str; N]) -> Table {
    let mut table = Table::new();
    table.load_style(NOTHING).set_header(header);
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::Protocol;
    use crate::firewalld::Family;

    fn port(host_ip: &str) -> PublishedPort {
        PublishedPort {
            container: "web".into(),
            container_id: "abc".into(),
            host_ip: host_ip.parse().unwrap(),
            host_port: 8080,
            protocol: Protocol::Tcp,
            container_ip: Some(if host_ip.contains(':') {
                "fd00::2".parse().unwrap()
            } else {
                "172.17.0.2".parse().unwrap()
            }),
            container_port: 80,
        }
    }

    fn firewalld(strict: Option<bool>) -> FirewalldInfo {
        FirewalldInfo {
            version: "2.5.2".into(),
            backend: "nftables".into(),
            default_zone: "public".into(),
            strict_forward_ports: strict,
        }
    }

    fn rule(family: Family, args: &[&str]) -> DirectRule {
        DirectRule {
            family,
            table: "filter".into(),
            chain: DOCKER_USER.into(),
            priority: 0,
            args: args.iter().map(|arg| arg.to_string()).collect(),
        }
    }

    #[test]
    fn a_published_port_with_nothing_in_docker_user_is_open() {
        let info = firewalld(Some(false));
        assert_eq!(
            assess(&port("0.0.0.0"), Some(&info), &[]),
            Reachability::Open
        );
        let only_return = [rule(Family::Ipv4, &["-j", "RETURN"])];
        assert_eq!(
            assess(&port("0.0.0.0"), Some(&info), &only_return),
            Reachability::Open
        );
    }

    #[test]
    fn loopback_binding_and_strict_forward_ports_close_it() {
        let info = firewalld(Some(true));
        assert_eq!(
            assess(&port("127.0.0.1"), Some(&info), &[]),
            Reachability::LoopbackOnly
        );
        assert_eq!(
            assess(&port("0.0.0.0"), Some(&info), &[]),
            Reachability::BlockedByStrictForwardPorts
        );
        assert_eq!(assess(&port("::"), None, &[]), Reachability::Unknown);
    }

    #[test]
    fn without_a_container_address_of_the_family_the_host_zones_decide() {
        let no_ipv6 = PublishedPort {
            container_ip: None,
            ..port("::")
        };
        let info = firewalld(None);
        assert_eq!(assess(&no_ipv6, Some(&info), &[]), Reachability::ViaProxy);
    }

    #[test]
    fn rules_filter_only_their_own_family() {
        let info = firewalld(None);
        let drop_v4 = [rule(Family::Ipv4, &["-s", "10.0.0.1", "-j", "DROP"])];
        assert_eq!(
            assess(&port("0.0.0.0"), Some(&info), &drop_v4),
            Reachability::Filtered
        );
        assert_eq!(
            assess(&port("::"), Some(&info), &drop_v4),
            Reachability::Open
        );
    }
}
