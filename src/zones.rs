//! Zone management (`[zone]`), the decisions: what containers may reach on the host itself
//! (zone docker's target, services and ports), and the optional zone the bridges are bound to
//! while Docker runs. Pure; the applier makes the calls.
//!
//! Docker creates zone docker once (target ACCEPT) and never overwrites it, so settings made on
//! it stay across Docker restarts. dockgate records what it found before changing a key, so a
//! key dropped from the config, and `dockgated --remove`, put back what was there.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::config;
use crate::docker;
use crate::firewalld::{ActiveZone, ZoneAccess, ZoneSettings};

pub const DOCKER_ZONE: &str = "docker";
/// Lets containers reach the outside while zone docker's target is not ACCEPT: with any other
/// target firewalld stops forwarding from zone docker to other zones (sandbox: container egress
/// failed on both stacks until this policy existed). firewalld 1.3 takes at most 18 characters.
pub const EGRESS_POLICY: &str = "dockgate-egress";
pub const EGRESS_DESCRIPTION: &str =
    "dockgate: containers reach the outside while zone docker's target is not ACCEPT";
/// State files: zone docker's settings as found, and the bridges bound elsewhere.
pub const ORIGINALS_FILE: &str = "zone-docker.json";
pub const BOUND_FILE: &str = "bound-bridges.json";

/// Zone docker's settings as dockgate found them, per key it has changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Originals {
    pub target: Option<String>,
    pub services: Option<Vec<String>>,
    pub ports: Option<Vec<(String, String)>>,
}

/// Bridges dockgate bound to another zone: `docker-prestart` returns them to zone docker
/// even when Docker, which knows its bridges, is not running.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bound {
    pub zone: String,
    pub bridges: BTreeSet<String>,
}

/// What the originals record must say before anything is changed (a key's value is recorded
/// before its first change), and what it keeps afterwards (keys the config no longer sets are
/// back to what was found and are forgotten).
pub fn records(
    settings: &config::ZoneSettings,
    recorded: &Originals,
    found: &ZoneSettings,
) -> (Originals, Originals) {
    let mut before = recorded.clone();
    if settings.target.is_some() && before.target.is_none() {
        before.target = Some(found.target.clone());
    }
    if settings.services.is_some() && before.services.is_none() {
        before.services = Some(found.services.clone());
    }
    if settings.ports.is_some() && before.ports.is_none() {
        before.ports = Some(found.ports.clone());
    }
    let after = Originals {
        target: before.target.clone().filter(|_| settings.target.is_some()),
        services: before
            .services
            .clone()
            .filter(|_| settings.services.is_some()),
        ports: before.ports.clone().filter(|_| settings.ports.is_some()),
    };
    (before, after)
}

/// Whether zone docker's settings need looking at: the config sets a key, or a key dockgate
/// changed is still to be given back. Otherwise nothing there is dockgate's business, and an
/// Expose does not wait for firewalld to describe the zone.
pub fn managed(settings: &config::ZoneSettings, recorded: &Originals) -> bool {
    settings.target.is_some()
        || settings.services.is_some()
        || settings.ports.is_some()
        || *recorded != Originals::default()
}

/// Zone docker's settings as the config asks for them: the config's keys, and for keys it no
/// longer sets, what dockgate found there before it changed them.
pub fn desired_access(settings: &config::ZoneSettings, originals: &Originals) -> ZoneAccess {
    ZoneAccess {
        target: settings
            .target
            .map(|target| target.as_firewalld().to_owned())
            .or_else(|| originals.target.clone()),
        services: settings
            .services
            .clone()
            .or_else(|| originals.services.clone()),
        ports: settings
            .ports
            .as_ref()
            .map(|ports| ports.iter().map(firewalld_port).collect())
            .or_else(|| originals.ports.clone()),
    }
}

fn firewalld_port(port: &config::PortRange) -> (String, String) {
    let range = if port.first == port.last {
        port.first.to_string()
    } else {
        format!("{}-{}", port.first, port.last)
    };
    (range, port.protocol.as_str().to_owned())
}

/// The keys of `desired` that differ from `current` (lists compared as sets).
pub fn access_changes(desired: &ZoneAccess, current: &ZoneSettings) -> ZoneAccess {
    fn differs<T: Ord + Clone>(wanted: &Option<Vec<T>>, current: &[T]) -> Option<Vec<T>> {
        wanted
            .as_ref()
            .filter(|wanted| {
                wanted.iter().collect::<BTreeSet<_>>() != current.iter().collect::<BTreeSet<_>>()
            })
            .cloned()
    }
    ZoneAccess {
        target: desired
            .target
            .clone()
            .filter(|target| !same_target(target, &current.target)),
        services: differs(&desired.services, &current.services),
        ports: differs(&desired.ports, &current.ports),
    }
}

/// Whether zone docker needs the egress policy: any target but ACCEPT stops its forwarding.
pub fn egress_needed(desired: &ZoneAccess) -> bool {
    desired
        .target
        .as_deref()
        .is_some_and(|target| target != "ACCEPT")
}

/// An unset target reads as "" in some settings dictionaries and means "default".
fn same_target(a: &str, b: &str) -> bool {
    fn meaning(target: &str) -> &str {
        if target.is_empty() { "default" } else { target }
    }
    meaning(a) == meaning(b)
}

/// Where Docker's bridges should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// In this zone (`bind`), Docker being up and done with its own rebuild.
    Bind { zone: String, bridges: Vec<String> },
    /// Back in zone docker: no `bind`, or Docker is down and must find them there to start.
    Return,
    /// Where they are: Docker is rebuilding after a firewalld reload, and binding in the
    /// middle of that made Docker 20.10 leave its DNAT out (seen in the sandbox).
    Leave,
}

/// The moves that put the bridges where `binding` says, and the record of bound bridges to
/// write before moving (`Some`) or to delete after (`forget`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BridgeSteps {
    pub record: Option<Bound>,
    /// (zone, interface)
    pub moves: Vec<(String, String)>,
    pub forget: bool,
}

/// The zone of each interface bound to one, from firewalld's active zones.
pub fn zones_of_interfaces(active: &BTreeMap<String, ActiveZone>) -> BTreeMap<&str, &str> {
    active
        .iter()
        .flat_map(|(zone, bindings)| {
            bindings
                .interfaces
                .iter()
                .map(move |interface| (interface.as_str(), zone.as_str()))
        })
        .collect()
}

pub fn bridge_steps(
    binding: &Binding,
    recorded: Option<&Bound>,
    active: &BTreeMap<String, ActiveZone>,
) -> BridgeSteps {
    let zone_of = zones_of_interfaces(active);
    match binding {
        Binding::Leave => BridgeSteps::default(),
        Binding::Bind { zone, bridges } => {
            let mut bound = recorded.cloned().unwrap_or_default();
            bound.zone = zone.clone();
            bound.bridges.extend(bridges.iter().cloned());
            BridgeSteps {
                record: (Some(&bound) != recorded).then_some(bound),
                moves: bridges
                    .iter()
                    .filter(|bridge| zone_of.get(bridge.as_str()) != Some(&zone.as_str()))
                    .map(|bridge| (zone.clone(), bridge.clone()))
                    .collect(),
                forget: false,
            }
        }
        // Every bridge dockgate bound, and every interface in that zone named like a Docker
        // bridge: what Docker must find in zone docker when it starts.
        Binding::Return => {
            let Some(bound) = recorded else {
                return BridgeSteps::default();
            };
            let moves = active
                .get(&bound.zone)
                .map(|zone| zone.interfaces.as_slice())
                .unwrap_or_default()
                .iter()
                .filter(|interface| {
                    docker::is_docker_named(interface) || bound.bridges.contains(*interface)
                })
                .map(|interface| (DOCKER_ZONE.to_owned(), interface.clone()))
                .collect();
            BridgeSteps {
                record: None,
                moves,
                forget: true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PortRange, ZoneTarget};
    use crate::docker::Protocol;

    fn found() -> ZoneSettings {
        ZoneSettings {
            target: "ACCEPT".to_owned(),
            services: vec![],
            ports: vec![],
            interfaces: vec!["docker0".to_owned()],
        }
    }

    #[test]
    fn absent_keys_leave_the_zone_as_docker_made_it() {
        let desired = desired_access(&config::ZoneSettings::default(), &Originals::default());
        assert!(desired.is_empty());
        assert!(access_changes(&desired, &found()).is_empty());
    }

    #[test]
    fn configured_keys_change_only_what_differs() {
        let settings = config::ZoneSettings {
            target: Some(ZoneTarget::Default),
            services: Some(vec!["dns".to_owned()]),
            ports: Some(vec![PortRange {
                first: 5000,
                last: 5010,
                protocol: Protocol::Udp,
            }]),
            bind: None,
        };
        let desired = desired_access(&settings, &Originals::default());
        let changes = access_changes(&desired, &found());
        assert_eq!(changes.target.as_deref(), Some("default"));
        assert_eq!(changes.services, Some(vec!["dns".to_owned()]));
        assert_eq!(
            changes.ports,
            Some(vec![("5000-5010".to_owned(), "udp".to_owned())])
        );
        let applied = ZoneSettings {
            target: "default".to_owned(),
            services: vec!["dns".to_owned()],
            ports: vec![("5000-5010".to_owned(), "udp".to_owned())],
            interfaces: vec![],
        };
        assert!(access_changes(&desired, &applied).is_empty());
    }

    #[test]
    fn a_key_dropped_from_the_config_goes_back_to_what_was_found() {
        let originals = Originals {
            target: Some("ACCEPT".to_owned()),
            services: Some(vec![]),
            ports: None,
        };
        let desired = desired_access(&config::ZoneSettings::default(), &originals);
        let now = ZoneSettings {
            target: "default".to_owned(),
            services: vec!["dns".to_owned()],
            ports: vec![],
            interfaces: vec![],
        };
        let changes = access_changes(&desired, &now);
        assert_eq!(changes.target.as_deref(), Some("ACCEPT"));
        assert_eq!(changes.services, Some(vec![]));
        assert_eq!(changes.ports, None);
    }

    #[test]
    fn the_zone_is_left_alone_unless_configured_or_something_is_to_be_given_back() {
        assert!(!managed(
            &config::ZoneSettings::default(),
            &Originals::default()
        ));
        let bind_only = config::ZoneSettings {
            bind: Some("internal".to_owned()),
            ..Default::default()
        };
        assert!(!managed(&bind_only, &Originals::default()));
        let services = config::ZoneSettings {
            services: Some(vec![]),
            ..Default::default()
        };
        assert!(managed(&services, &Originals::default()));
        let to_give_back = Originals {
            target: Some("ACCEPT".to_owned()),
            ..Originals::default()
        };
        assert!(managed(&config::ZoneSettings::default(), &to_give_back));
    }

    #[test]
    fn what_was_found_is_recorded_before_the_first_change_and_forgotten_when_given_back() {
        let settings = config::ZoneSettings {
            target: Some(ZoneTarget::Drop),
            ..Default::default()
        };
        let (before, after) = records(&settings, &Originals::default(), &found());
        assert_eq!(before.target.as_deref(), Some("ACCEPT"));
        assert_eq!(after, before);
        // Already recorded: the record is not overwritten by what dockgate itself set.
        let dropped = ZoneSettings {
            target: "DROP".to_owned(),
            ..found()
        };
        assert_eq!(records(&settings, &before, &dropped).0, before);
        // The key is gone from the config: kept until given back, then forgotten.
        let (before_removal, after_removal) =
            records(&config::ZoneSettings::default(), &before, &dropped);
        assert_eq!(before_removal, before);
        assert_eq!(after_removal, Originals::default());
    }

    fn active(zones: &[(&str, &[&str])]) -> BTreeMap<String, ActiveZone> {
        zones
            .iter()
            .map(|(zone, interfaces)| {
                (
                    zone.to_string(),
                    ActiveZone {
                        interfaces: interfaces.iter().map(|i| i.to_string()).collect(),
                        sources: vec![],
                    },
                )
            })
            .collect()
    }

    #[test]
    fn binding_moves_only_the_bridges_elsewhere_and_records_them_first() {
        let binding = Binding::Bind {
            zone: "internal".to_owned(),
            bridges: vec!["docker0".to_owned(), "br-1".to_owned()],
        };
        let steps = bridge_steps(
            &binding,
            None,
            &active(&[("docker", &["docker0"]), ("internal", &["br-1"])]),
        );
        assert_eq!(steps.moves, [("internal".to_owned(), "docker0".to_owned())]);
        let record = steps.record.expect("recorded before the move");
        assert_eq!(record.zone, "internal");
        assert_eq!(record.bridges.len(), 2);
        let again = bridge_steps(
            &binding,
            Some(&record),
            &active(&[("internal", &["docker0", "br-1"])]),
        );
        assert_eq!(again, BridgeSteps::default(), "nothing to do twice");
    }

    #[test]
    fn returning_takes_back_what_was_bound_and_docker_named_interfaces_only() {
        let recorded = Bound {
            zone: "internal".to_owned(),
            bridges: BTreeSet::from(["dg-custom".to_owned()]),
        };
        let steps = bridge_steps(
            &Binding::Return,
            Some(&recorded),
            &active(&[("internal", &["eth1", "docker0", "br-9", "dg-custom"])]),
        );
        let moved: Vec<&str> = steps.moves.iter().map(|(_, i)| i.as_str()).collect();
        assert_eq!(moved, ["docker0", "br-9", "dg-custom"]);
        assert!(steps.moves.iter().all(|(zone, _)| zone == DOCKER_ZONE));
        assert!(steps.forget);
        assert_eq!(
            bridge_steps(&Binding::Return, None, &active(&[])),
            BridgeSteps::default()
        );
        assert_eq!(
            bridge_steps(&Binding::Leave, Some(&recorded), &active(&[])),
            BridgeSteps::default()
        );
    }
}
