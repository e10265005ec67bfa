//! What the daemon publishes: the snapshot the API's read-only methods and properties answer
//! from, and which signals tell listeners that an answer changed. The core builds it after
//! every reconcile; the API only reads it.

use crate::config::Config;
use crate::docker::PublishedPort;
use crate::exposures::Listed;
use crate::policy::{self, Access, HostZones, Policy};

/// What the read-only methods and the properties answer from.
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub firewalld_connected: bool,
    pub docker_connected: bool,
    pub bridge_zone: String,
    pub rule_count: u32,
    /// Unix microseconds.
    pub last_reconcile: u64,
    /// How long the last reconcile that applied took, in microseconds.
    pub last_reconcile_duration_us: u64,
    pub config: Config,
    /// Every exposure in force or waiting for its container, config and runtime.
    pub exposures: Vec<Listed>,
    pub ports: Vec<PublishedPort>,
    /// What firewalld lets in to the host itself (where docker-proxy serves ports), as last
    /// read; None until firewalld could be read.
    pub host_zones: Option<HostZones>,
}

/// One row of ListPorts: a published port and who may reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRow {
    pub port: PublishedPort,
    pub access: Access,
}

/// One row of ListExposures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExposureRow {
    pub listed: Listed,
    pub active: bool,
}

/// The values behind the properties that can change (Version cannot), to tell which did.
#[derive(Debug, Clone, PartialEq)]
pub struct Properties {
    pub firewalld_connected: bool,
    pub docker_connected: bool,
    pub default: String,
    pub verdict: String,
    pub on_revoke: String,
    pub strict_forward_ports: bool,
    pub bridge_zone: String,
    pub rule_count: u32,
    pub last_reconcile: u64,
}

/// A property whose value changed (PropertiesChanged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Property {
    FirewalldConnected,
    DockerConnected,
    Default,
    Verdict,
    OnRevoke,
    StrictForwardPorts,
    BridgeZone,
    RuleCount,
    LastReconcile,
}

impl Status {
    pub fn policy(&self) -> Policy {
        Policy::new(&self.config, &self.exposures, &self.ports)
    }

    /// What ListPorts answers.
    pub fn port_rows(&self) -> Vec<PortRow> {
        let policy = self.policy();
        self.ports
            .iter()
            .map(|port| PortRow {
                access: policy::access(&policy, self.host_zones.as_ref(), port),
                port: port.clone(),
            })
            .collect()
    }

    /// What ListExposures answers.
    pub fn exposure_rows(&self) -> Vec<ExposureRow> {
        self.exposures
            .iter()
            .map(|listed| ExposureRow {
                active: policy::in_force(&listed.exposure, &self.ports),
                listed: listed.clone(),
            })
            .collect()
    }

    pub fn properties(&self) -> Properties {
        Properties {
            firewalld_connected: self.firewalld_connected,
            docker_connected: self.docker_connected,
            default: self.config.default.to_string(),
            verdict: self.config.verdict.to_string(),
            on_revoke: self.config.on_revoke.to_string(),
            strict_forward_ports: self
                .host_zones
                .as_ref()
                .is_some_and(|zones| zones.strict_forward_ports),
            bridge_zone: self.bridge_zone.clone(),
            rule_count: self.rule_count,
            last_reconcile: self.last_reconcile,
        }
    }
}

/// What was last announced of the status: the next announcement names what differs.
#[derive(Debug, Clone)]
pub struct Announced {
    properties: Properties,
    ports: Vec<PortRow>,
    exposures: Vec<ExposureRow>,
}

/// What changed since the last announcement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub exposures: bool,
    pub ports: bool,
    pub properties: Vec<Property>,
}

impl Announced {
    pub fn of(status: &Status) -> Self {
        Announced {
            properties: status.properties(),
            ports: status.port_rows(),
            exposures: status.exposure_rows(),
        }
    }

    /// What differs in `status`; from now on `status` is what was announced.
    pub fn update(&mut self, status: &Status) -> Changes {
        let now = Announced::of(status);
        let (before, after) = (&self.properties, &now.properties);
        let properties = [
            (Property::RuleCount, before.rule_count != after.rule_count),
            (
                Property::LastReconcile,
                before.last_reconcile != after.last_reconcile,
            ),
            (
                Property::FirewalldConnected,
                before.firewalld_connected != after.firewalld_connected,
            ),
            (
                Property::DockerConnected,
                before.docker_connected != after.docker_connected,
            ),
            (Property::Default, before.default != after.default),
            (Property::Verdict, before.verdict != after.verdict),
            (Property::OnRevoke, before.on_revoke != after.on_revoke),
            (
                Property::StrictForwardPorts,
                before.strict_forward_ports != after.strict_forward_ports,
            ),
            (
                Property::BridgeZone,
                before.bridge_zone != after.bridge_zone,
            ),
        ]
        .into_iter()
        .filter_map(|(property, changed)| changed.then_some(property))
        .collect();
        let changes = Changes {
            exposures: self.exposures != now.exposures,
            ports: self.ports != now.ports,
            properties,
        };
        *self = now;
        changes
    }
}
