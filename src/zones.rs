//! Zone management (`[zone]`): what containers may reach on the host itself (zone docker's
//! target, services and ports), and the optional zone the bridges are bound to while Docker
//! runs.
//!
//! Docker creates zone docker once (target ACCEPT) and never overwrites it, so settings made on
//! it stay across Docker restarts. dockgate records what it found before changing a key, so a
//! key dropped from the config, and `dockgated --remove`, put back what was there.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::config;
use crate::firewalld::{Firewalld, FirewalldError, ZoneAccess, ZoneSettings};
use crate::state::{StateDir, StateError};

pub const DOCKER_ZONE: &str = "docker";
/// Lets containers reach the outside while zone docker's target is not ACCEPT: with any other
/// target firewalld stops forwarding from zone docker to other zones (sandbox: container egress
/// failed on both stacks until this policy existed). firewalld 1.3 takes at most 18 characters.
pub const EGRESS_POLICY: &str = "dockgate-egress";
const ORIGINALS_FILE: &str = "zone-docker.json";
const BOUND_FILE: &str = "bound-bridges.json";

#[derive(Debug, thiserror::Error)]
pub enum ZoneError {
    #[error(transparent)]
    Firewalld(#[from] FirewalldError),
    #[error(transparent)]
    State(#[from] StateError),
}

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

/// An unset target reads as "" in some settings dictionaries and means "default".
fn same_target(a: &str, b: &str) -> bool {
    fn meaning(target: &str) -> &str {
        if target.is_empty() { "default" } else { target }
    }
    meaning(a) == meaning(b)
}

/// What a zone apply changed, for logs and the write count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZoneOutcome {
    pub writes: usize,
    pub reloaded: bool,
}

/// Makes zone docker's host-access settings what the config asks for, permanent and runtime.
/// Does nothing while zone docker does not exist (Docker has never started with firewalld).
pub async fn apply_access(
    firewalld: &Firewalld,
    state: &StateDir,
    settings: &config::ZoneSettings,
) -> Result<ZoneOutcome, ZoneError> {
    let mut outcome = ZoneOutcome::default();
    if !firewalld
        .zones()
        .await?
        .iter()
        .any(|zone| zone == DOCKER_ZONE)
    {
        return Ok(outcome);
    }
    let permanent = firewalld.permanent_zone(DOCKER_ZONE).await?;
    let found = permanent.settings().await?;

    // Remember what was there before the first change, and before making it.
    let mut originals: Originals = state.load(ORIGINALS_FILE)?.unwrap_or_default();
    let recorded = originals.clone();
    if settings.target.is_some() && originals.target.is_none() {
        originals.target = Some(found.target.clone());
    }
    if settings.services.is_some() && originals.services.is_none() {
        originals.services = Some(found.services.clone());
    }
    if settings.ports.is_some() && originals.ports.is_none() {
        originals.ports = Some(found.ports.clone());
    }
    if originals != recorded {
        state.store(ORIGINALS_FILE, &originals)?;
    }

    let desired = desired_access(settings, &originals);
    let permanent_changes = access_changes(&desired, &found);
    if !permanent_changes.is_empty() {
        permanent.set_access(&permanent_changes).await?;
        outcome.writes += 1;
    }
    let runtime = firewalld.zone_settings(DOCKER_ZONE).await?;
    let runtime_changes = access_changes(&desired, &runtime);
    if runtime_changes.services.is_some() || runtime_changes.ports.is_some() {
        firewalld
            .set_zone_access(DOCKER_ZONE, &runtime_changes)
            .await?;
        outcome.writes += 1;
    }
    // A target only changes through the permanent configuration and a reload; so does a
    // policy.
    let mut reload = runtime_changes.target.is_some();
    let egress_needed = desired
        .target
        .as_deref()
        .is_some_and(|target| target != "ACCEPT");
    let egress_exists = firewalld
        .permanent_policies()
        .await?
        .iter()
        .any(|policy| policy == EGRESS_POLICY);
    if egress_needed && !egress_exists {
        firewalld
            .add_permanent_accept_policy(
                EGRESS_POLICY,
                "dockgate: containers reach the outside while zone docker's target is not ACCEPT",
                &[DOCKER_ZONE],
                &["ANY"],
            )
            .await?;
        outcome.writes += 1;
        reload = true;
    } else if !egress_needed && egress_exists {
        firewalld.remove_permanent_policy(EGRESS_POLICY).await?;
        outcome.writes += 1;
        reload = true;
    }
    if reload {
        firewalld.reload_and_wait().await?;
        outcome.writes += 1;
        outcome.reloaded = true;
    }

    // Keys the config no longer sets are back to what was found: forget them.
    let forgotten = Originals {
        target: originals
            .target
            .clone()
            .filter(|_| settings.target.is_some()),
        services: originals
            .services
            .clone()
            .filter(|_| settings.services.is_some()),
        ports: originals.ports.clone().filter(|_| settings.ports.is_some()),
    };
    if forgotten != originals {
        if forgotten == Originals::default() {
            state.remove(ORIGINALS_FILE)?;
        } else {
            state.store(ORIGINALS_FILE, &forgotten)?;
        }
    }
    Ok(outcome)
}

/// Binds Docker's bridges to `zone` at run time only: a permanent binding would make
/// firewalld hold them there when Docker starts, and Docker refuses to start then.
pub async fn bind_bridges(
    firewalld: &Firewalld,
    state: &StateDir,
    zone: &str,
    bridges: &[String],
) -> Result<usize, ZoneError> {
    let mut bound: Bound = state.load(BOUND_FILE)?.unwrap_or_default();
    let before = bound.clone();
    if bound.zone != zone {
        bound.zone = zone.to_owned();
    }
    bound.bridges.extend(bridges.iter().cloned());
    if bound != before {
        state.store(BOUND_FILE, &bound)?;
    }
    let mut writes = 0;
    for bridge in bridges {
        if firewalld.zone_of_interface(bridge).await?.as_deref() != Some(zone) {
            firewalld.change_zone_of_interface(zone, bridge).await?;
            writes += 1;
        }
    }
    Ok(writes)
}

/// Returns every bridge dockgate bound elsewhere, and every interface in that zone named like a
/// Docker bridge, to zone docker: what Docker must find when it starts. Needs no Docker.
pub async fn return_bridges(
    firewalld: &Firewalld,
    state: &StateDir,
) -> Result<Vec<String>, ZoneError> {
    let Some(bound) = state.load::<Bound>(BOUND_FILE)? else {
        return Ok(Vec::new());
    };
    let active = firewalld.active_zones().await?;
    let in_zone = active
        .get(&bound.zone)
        .map(|zone| zone.interfaces.clone())
        .unwrap_or_default();
    let mut returned = Vec::new();
    for interface in in_zone {
        let docker_named = interface == "docker0" || interface.starts_with("br-");
        if docker_named || bound.bridges.contains(&interface) {
            firewalld
                .change_zone_of_interface(DOCKER_ZONE, &interface)
                .await?;
            returned.push(interface);
        }
    }
    Ok(returned)
}

/// Forgets the bridges once they are back in zone docker.
pub fn forget_bound(state: &StateDir) -> Result<(), ZoneError> {
    Ok(state.remove(BOUND_FILE)?)
}

/// `--remove`: zone docker's settings back to what dockgate found, bridges back in zone docker.
pub async fn restore(firewalld: &Firewalld, state: &StateDir) -> Result<ZoneOutcome, ZoneError> {
    let returned = return_bridges(firewalld, state).await?;
    forget_bound(state)?;
    let mut outcome = apply_access(firewalld, state, &config::ZoneSettings::default()).await?;
    outcome.writes += returned.len();
    Ok(outcome)
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
}
