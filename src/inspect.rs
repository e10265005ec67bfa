//! `dockgated inspect`: what dockgate sees, read-only. firewalld, the zones of Docker's bridges,
//! the published ports and who can reach each from outside today, and the direct rules in
//! DOCKER-USER that are not dockgate's.
//!
//! Who can reach a port is the policy evaluator's answer (the same as ListPorts and Explain),
//! once firewalld is seen to hold exactly the rules that policy plans. When it holds none of
//! dockgate's rules, Docker alone decides (published means open); when it holds others than
//! planned, nothing certain can be said and the report says so.

use std::fmt::Write as _;
use std::path::Path;

use comfy_table::{Table, presets::NOTHING};
use serde::Serialize;

use crate::apply::Applier;
use crate::config::{Config, DefaultPolicy};
use crate::diff;
use crate::docker::{Docker, Network, PublishedPort};
use crate::exposures::{self, Stored};
use crate::firewalld::{DOCKER_USER, DirectRule, Firewall, Firewalld, FirewalldInfo, Layer};
use crate::plan::{self, DockerView, Inputs, Plan};
use crate::policy::{self, Access, HostZones, Policy, State};

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub firewalld: Readout<FirewalldInfo>,
    pub docker: Readout<DockerInfo>,
    /// dockgate's own rules, compared with what its config and exposures plan.
    pub dockgate: Readout<Enforcement>,
    pub bridges: Vec<Bridge>,
    pub ports: Vec<PortReport>,
    /// Direct rules (runtime) in DOCKER-USER that are not dockgate's, both families. Rules put
    /// there with iptables behind firewalld's back cannot be seen over D-Bus and are not listed.
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
    /// Docker's firewall backend as it reports it (Docker 28.1 and later, API 1.49:
    /// "iptables+firewalld", "nftables+firewalld"); None where it does not say (iptables).
    pub firewall_backend: Option<String>,
}

impl DockerInfo {
    /// Docker's experimental nftables backend (Docker 29) has no DOCKER-USER chain: direct
    /// rules put there are never reached.
    pub fn has_docker_user(&self) -> bool {
        !self
            .firewall_backend
            .as_deref()
            .is_some_and(|backend| backend.starts_with("nftables"))
    }
}

/// Whether the kernel holds what dockgate's policy plans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub enum Enforcement {
    /// Exactly the planned rules: the policy's answers are what packets do.
    InForce { rules: usize },
    /// None of dockgate's rules: Docker alone decides.
    NotApplied,
    /// Others than planned (dockgated not running, or a reconcile pending).
    Differs { missing: usize, extra: usize },
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
    /// Who can reach it from outside; None when that cannot be known (`unknown` says why).
    pub outside: Option<Access>,
    pub loopback_only: bool,
    pub unknown: Option<String>,
}

impl PortReport {
    fn describe(&self) -> String {
        let Some(access) = &self.outside else {
            return format!(
                "unknown: {}",
                self.unknown.as_deref().unwrap_or("see dockgate above")
            );
        };
        if self.loopback_only {
            return "loopback only".to_owned();
        }
        let who = match access.state {
            State::Open if access.audited => {
                "OPEN to every source, audited (default = \"deny\" would refuse whom no grant names)"
                    .to_owned()
            }
            State::Open => "OPEN to every source".to_owned(),
            State::Denied => "denied".to_owned(),
            State::TrustedOnly => format!("trusted only: {}", access.sources.join(", ")),
            State::Exposed => format!("exposed: {}", access.sources.join(", ")),
        };
        match access.judged_by.strip_prefix("zone ") {
            Some(zone) => format!("via docker-proxy, zone {zone}: {who}"),
            None => who,
        }
    }
}

/// The rules of one plan compared with dockgate's rules in the kernel.
pub fn enforcement(planned: &plan::Plan, runtime: &[DirectRule]) -> Enforcement {
    let ours: Vec<&DirectRule> = runtime
        .iter()
        .filter(|rule| diff::owns_rule(rule))
        .collect();
    if ours.is_empty() {
        return if planned.rules.is_empty() {
            Enforcement::InForce { rules: 0 }
        } else {
            Enforcement::NotApplied
        };
    }
    let missing = planned
        .rules
        .iter()
        .filter(|rule| !ours.contains(rule))
        .count();
    let extra = ours
        .iter()
        .filter(|rule| !planned.rules.contains(rule))
        .count();
    if missing == 0 && extra == 0 {
        Enforcement::InForce {
            rules: planned.rules.len(),
        }
    } else {
        Enforcement::Differs { missing, extra }
    }
}

/// The policy that answers for the kernel as it is: dockgate's when in force, Docker's own
/// (everything published is open) when none of dockgate's rules are there; None otherwise.
fn answering(policy: Option<Policy>, enforcement: Option<&Enforcement>) -> Option<Policy> {
    match (enforcement?, policy) {
        (Enforcement::InForce { .. }, Some(policy)) => Some(policy),
        (Enforcement::NotApplied, _) => Some(Policy::new(
            &Config {
                default: DefaultPolicy::Allow,
                ..Config::default()
            },
            &[],
            &[],
        )),
        _ => None,
    }
}

impl Report {
    /// Reads everything it can; a daemon that is down shows up as an error in its field.
    pub async fn gather(
        applier: &Applier<Firewalld>,
        docker: &Docker,
        config_path: &Path,
    ) -> Report {
        let firewalld = &applier.firewall;
        let (info, runtime_rules, zones) = read_firewalld(firewalld).await;
        let (docker_info, networks, ports) = read_docker(docker).await;
        let view = DockerView {
            ports: ports.clone(),
            bridges: networks
                .iter()
                .filter_map(|network| network.bridge.clone())
                .collect(),
        };

        let planned = planned(config_path, applier, &view);
        let policy = planned.as_ref().map(|(policy, _)| policy.clone());
        let dockgate = match (&planned, info.as_ref()) {
            (_, None) => Readout::Unreadable {
                error: "firewalld could not be read".to_owned(),
            },
            (Ok((_, plan)), Some(_)) => Readout::Read(enforcement(plan, &runtime_rules)),
            // No config (dockgate not set up) and none of its rules: Docker alone decides.
            (Err(_), Some(_)) if !runtime_rules.iter().any(diff::owns_rule) => {
                Readout::Read(Enforcement::NotApplied)
            }
            (Err(error), Some(_)) => Readout::Unreadable {
                error: error.clone(),
            },
        };
        let answer = answering(policy.ok(), dockgate.as_ref());

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
        // Where Docker has no DOCKER-USER (its nftables backend) nobody's rules there are reached.
        let docker_user = docker_info.as_ref().is_none_or(DockerInfo::has_docker_user);
        let docker_user_rules: Vec<DirectRule> = runtime_rules
            .into_iter()
            .filter(|rule| {
                docker_user
                    && rule.table == "filter"
                    && rule.chain == DOCKER_USER
                    && !diff::owns_rule(rule)
            })
            .collect();
        let ports = port_reports(ports, &docker_user_rules, answer.as_ref(), zones.as_ref());
        Report {
            firewalld: info,
            docker: docker_info,
            dockgate,
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
                let _ = match &docker.firewall_backend {
                    Some(backend) => writeln!(
                        out,
                        "Docker {} (firewall backend {backend}{})",
                        docker.version,
                        if docker.has_docker_user() {
                            ""
                        } else {
                            ": no DOCKER-USER chain; dockgate judges in mangle FORWARD and \
                             rejects in filter FORWARD"
                        }
                    ),
                    None => writeln!(out, "Docker {}", docker.version),
                };
            }
            Readout::Unreadable { error } => {
                let _ = writeln!(out, "Docker: {error}");
            }
        }
        let _ = writeln!(
            out,
            "dockgate: {}",
            match &self.dockgate {
                Readout::Read(Enforcement::InForce { rules }) =>
                    format!("policy in force ({rules} rules)"),
                Readout::Read(Enforcement::NotApplied) =>
                    "none of its rules are in firewalld: Docker alone decides".to_owned(),
                Readout::Read(Enforcement::Differs { missing, extra }) => format!(
                    "its rules in firewalld differ from its policy ({missing} missing, {extra} \
                     not planned): dockgated is not running or a reconcile is pending"
                ),
                Readout::Unreadable { error } => format!("policy unknown: {error}"),
            }
        );

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
                ports.add_row([
                    port.container.clone(),
                    socket(port.host_ip, port.host_port),
                    port.protocol.to_string(),
                    forwards_to(port),
                    report.describe(),
                ]);
            }
            let _ = writeln!(out, "{ports}");
        }

        if !self.docker_user_rules.is_empty() {
            out.push_str(
                "\nDirect rules in DOCKER-USER that are not dockgate's (runtime; they may filter \
                 published ports too)\n",
            );
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

/// Where the port leads. A port of a family the container has no address of is served by
/// docker-proxy on the host, which connects to the container's port over the other family.
fn forwards_to(port: &PublishedPort) -> String {
    match port.container_ip {
        Some(ip) => socket(ip, port.container_port),
        None => format!("container port {}", port.container_port),
    }
}

/// firewalld's info, its runtime direct rules and the host's zones. Without the rules nothing
/// can be said about reachability, so a failure to read them counts as firewalld being
/// unreadable.
async fn read_firewalld(
    firewalld: &Firewalld,
) -> (Readout<FirewalldInfo>, Vec<DirectRule>, Option<HostZones>) {
    let state = async {
        let info = firewalld.info().await?;
        let rules = firewalld.rules(Layer::Runtime).await?;
        let zones = firewalld.host_zones().await?;
        Ok::<_, crate::firewalld::FirewalldError>((info, rules, zones))
    }
    .await;
    match state {
        Ok((info, rules, zones)) => (Readout::Read(info), rules, Some(zones)),
        Err(error) => (Readout::from_result(Err(error)), Vec::new(), None),
    }
}

/// Docker's version and backend, its networks and published ports. Likewise an empty list of
/// ports must mean none, never "could not read them".
async fn read_docker(docker: &Docker) -> (Readout<DockerInfo>, Vec<Network>, Vec<PublishedPort>) {
    let state = async {
        let info = DockerInfo {
            version: docker.version().await?,
            firewall_backend: docker.firewall_backend().await?,
        };
        let networks = docker.networks().await?;
        let ports = docker.published_ports().await?;
        Ok::<_, crate::docker::DockerError>((info, networks, ports))
    }
    .await;
    match state {
        Ok((info, networks, ports)) => (Readout::Read(info), networks, ports),
        Err(error) => (Readout::from_result(Err(error)), Vec::new(), Vec::new()),
    }
}

/// dockgate's policy and plan as dockgated would apply them now: the config and the exposures.
fn planned(
    config_path: &Path,
    applier: &Applier<Firewalld>,
    view: &DockerView,
) -> Result<(Policy, Plan), String> {
    let config = Config::load(config_path).map_err(|error| error.to_string())?;
    let (runtime, _) = Stored::load(&applier.state)
        .map_err(|error| format!("{}: {error}", applier.state.path().display()))?
        .expire(exposures::unix_now());
    let inputs = Inputs {
        config: &config,
        runtime: runtime.all(),
        docker: view,
        docker_up: true,
        rebuilding: false,
    };
    Ok((inputs.policy(), plan::desired(&inputs).plan))
}

/// Who can reach each published port from outside, or why that cannot be said.
fn port_reports(
    ports: Vec<PublishedPort>,
    docker_user_rules: &[DirectRule],
    answer: Option<&Policy>,
    zones: Option<&HostZones>,
) -> Vec<PortReport> {
    ports
        .into_iter()
        .map(|port| {
            // Rules of others can only refuse more than dockgate does, but which
            // connections they refuse is theirs to say.
            let filtered_by_others = policy::serving(&port) == policy::Serving::Dnat
                && docker_user_rules
                    .iter()
                    .any(|rule| rule.family.matches(port.host_ip));
            let unknown = if filtered_by_others {
                Some("DOCKER-USER rules that are not dockgate's (below) filter it too".to_owned())
            } else if answer.is_none() {
                Some("see dockgate above".to_owned())
            } else {
                None
            };
            PortReport {
                outside: answer
                    .filter(|_| unknown.is_none())
                    .map(|policy| policy::access(policy, zones, &port)),
                loopback_only: port.is_loopback_only(),
                unknown,
                port,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn planned(text: &str) -> plan::Plan {
        let config = Config::parse(text, Path::new("test.toml")).unwrap();
        let listed = exposures::listed(&config, &[]);
        plan::plan(&Policy::new(&config, &listed, &[]), &["docker0".to_owned()])
    }

    #[test]
    fn in_force_only_when_the_kernel_holds_exactly_the_plan() {
        let plan = planned("trusted = [\"10.0.0.0/8\"]\n");
        let all: Vec<DirectRule> = plan.rules.iter().cloned().collect();
        assert_eq!(
            enforcement(&plan, &all),
            Enforcement::InForce {
                rules: plan.rules.len()
            }
        );
        assert_eq!(enforcement(&plan, &[]), Enforcement::NotApplied);
        assert_eq!(
            enforcement(&plan, &all[1..]),
            Enforcement::Differs {
                missing: 1,
                extra: 0
            }
        );
        let other = planned("trusted = [\"10.0.0.0/9\"]\n");
        let Enforcement::Differs { missing, extra } = enforcement(&other, &all) else {
            panic!("a changed policy is not in force");
        };
        assert!(missing > 0 && extra > 0);
        // Someone else's rules are not dockgate's business.
        let foreign = DirectRule {
            family: crate::rules::Family::Ipv4,
            table: "filter".into(),
            chain: DOCKER_USER.into(),
            priority: 0,
            args: vec!["-s".into(), "192.0.2.1".into(), "-j".into(), "DROP".into()],
        };
        assert_eq!(
            enforcement(&plan::Plan::default(), &[foreign]),
            Enforcement::InForce { rules: 0 }
        );
    }

    #[test]
    fn only_dockers_nftables_backend_lacks_docker_user() {
        let docker = |backend: Option<&str>| DockerInfo {
            version: "29.1.0".to_owned(),
            firewall_backend: backend.map(str::to_owned),
        };
        assert!(
            docker(None).has_docker_user(),
            "Docker before 28.1 says nothing"
        );
        assert!(docker(Some("iptables+firewalld")).has_docker_user());
        assert!(!docker(Some("nftables+firewalld")).has_docker_user());
        assert!(!docker(Some("nftables")).has_docker_user());
    }

    #[test]
    fn a_proxied_port_names_the_container_port_it_leads_to() {
        let mut port = PublishedPort {
            container: "db".into(),
            container_id: "0123456789abcdef".into(),
            host_ip: "::".parse().unwrap(),
            host_port: 5432,
            protocol: crate::docker::Protocol::Tcp,
            container_ip: None,
            container_port: 80,
            routed: false,
        };
        assert_eq!(forwards_to(&port), "container port 80");
        port.container_ip = Some("fd00::2".parse().unwrap());
        assert_eq!(forwards_to(&port), "[fd00::2]:80");
    }

    #[test]
    fn not_applied_means_docker_alone_decides_and_differing_means_unknown() {
        let docker_alone = answering(None, Some(&Enforcement::NotApplied)).unwrap();
        assert!(!docker_alone.enforcing());
        assert!(
            answering(
                None,
                Some(&Enforcement::Differs {
                    missing: 1,
                    extra: 0
                })
            )
            .is_none()
        );
        assert!(answering(None, None).is_none());
    }
}
