//! Typed proxies for the parts of firewalld's D-Bus API that dockgate uses.
//!
//! Signatures were read from the live introspection of firewalld 1.3.3 and 2.5.2 (identical for
//! every member used here); firewalld's own reference is `doc/xml/firewalld.dbus.xml`.

use std::collections::HashMap;

use zbus::proxy;
use zbus::{OwnedObjectPath, OwnedVariant, Variant};

pub const BUS_NAME: &str = "org.fedoraproject.FirewallD1";

/// A direct rule as firewalld's D-Bus API carries it: (ipv, table, chain, priority, args).
pub type RawRule = (String, String, String, i32, Vec<String>);

#[proxy(
    interface = "org.fedoraproject.FirewallD1",
    default_service = "org.fedoraproject.FirewallD1",
    default_path = "/org/fedoraproject/FirewallD1"
)]
pub trait FirewallD1 {
    #[zbus(name = "reload")]
    fn reload(&self) -> zbus::Result<()>;

    #[zbus(name = "getDefaultZone")]
    fn get_default_zone(&self) -> zbus::Result<String>;

    #[zbus(name = "getServiceSettings2")]
    fn get_service_settings2(&self, service: &str) -> zbus::Result<HashMap<String, OwnedVariant>>;

    #[zbus(property, name = "version")]
    fn version(&self) -> zbus::Result<String>;

    #[zbus(property, name = "state")]
    fn state(&self) -> zbus::Result<String>;

    #[zbus(signal, name = "Reloaded")]
    fn reloaded(&self) -> zbus::Result<()>;
}

#[proxy(
    interface = "org.fedoraproject.FirewallD1.zone",
    default_service = "org.fedoraproject.FirewallD1",
    default_path = "/org/fedoraproject/FirewallD1"
)]
pub trait Zone {
    #[zbus(name = "getActiveZones")]
    fn get_active_zones(&self) -> zbus::Result<HashMap<String, HashMap<String, Vec<String>>>>;

    #[zbus(name = "getZones")]
    fn get_zones(&self) -> zbus::Result<Vec<String>>;

    #[zbus(name = "getZoneOfInterface")]
    fn get_zone_of_interface(&self, interface: &str) -> zbus::Result<String>;

    #[zbus(name = "changeZoneOfInterface")]
    fn change_zone_of_interface(&self, zone: &str, interface: &str) -> zbus::Result<String>;

    #[zbus(name = "getZoneSettings2")]
    fn get_zone_settings2(&self, zone: &str) -> zbus::Result<HashMap<String, OwnedVariant>>;

    #[zbus(name = "setZoneSettings2")]
    fn set_zone_settings2(
        &self,
        zone: &str,
        settings: HashMap<&str, Variant<'_>>,
    ) -> zbus::Result<()>;

    /// Each as (port, protocol, toport, toaddr).
    #[zbus(name = "getForwardPorts")]
    fn get_forward_ports(&self, zone: &str) -> zbus::Result<Vec<Vec<String>>>;

    #[zbus(name = "addForwardPort")]
    fn add_forward_port(
        &self,
        zone: &str,
        port: &str,
        protocol: &str,
        toport: &str,
        toaddr: &str,
        timeout: i32,
    ) -> zbus::Result<String>;

    #[zbus(name = "removeForwardPort")]
    fn remove_forward_port(
        &self,
        zone: &str,
        port: &str,
        protocol: &str,
        toport: &str,
        toaddr: &str,
    ) -> zbus::Result<String>;

    #[zbus(signal, name = "InterfaceAdded")]
    fn interface_added(&self, zone: String, interface: String) -> zbus::Result<()>;

    #[zbus(signal, name = "InterfaceRemoved")]
    fn interface_removed(&self, zone: String, interface: String) -> zbus::Result<()>;

    #[zbus(signal, name = "ZoneOfInterfaceChanged")]
    fn zone_of_interface_changed(&self, zone: String, interface: String) -> zbus::Result<()>;

    #[zbus(signal, name = "PortAdded")]
    fn port_added(
        &self,
        zone: String,
        port: String,
        protocol: String,
        timeout: i32,
    ) -> zbus::Result<()>;

    #[zbus(signal, name = "PortRemoved")]
    fn port_removed(&self, zone: String, port: String, protocol: String) -> zbus::Result<()>;

    #[zbus(signal, name = "ServiceAdded")]
    fn service_added(&self, zone: String, service: String, timeout: i32) -> zbus::Result<()>;

    #[zbus(signal, name = "ServiceRemoved")]
    fn service_removed(&self, zone: String, service: String) -> zbus::Result<()>;

    #[zbus(signal, name = "SourceAdded")]
    fn source_added(&self, zone: String, source: String) -> zbus::Result<()>;

    #[zbus(signal, name = "SourceRemoved")]
    fn source_removed(&self, zone: String, source: String) -> zbus::Result<()>;
}

/// The permanent direct configuration has the same members on another interface and path.
pub const CONFIG_DIRECT_INTERFACE: &str = "org.fedoraproject.FirewallD1.config.direct";
pub const CONFIG_PATH: &str = "/org/fedoraproject/FirewallD1/config";

/// The runtime direct interface; built with `CONFIG_DIRECT_INTERFACE` and `CONFIG_PATH` it is
/// the permanent one.
#[proxy(
    interface = "org.fedoraproject.FirewallD1.direct",
    default_service = "org.fedoraproject.FirewallD1",
    default_path = "/org/fedoraproject/FirewallD1"
)]
pub trait Direct {
    #[zbus(name = "addChain")]
    fn add_chain(&self, ipv: &str, table: &str, chain: &str) -> zbus::Result<()>;

    #[zbus(name = "removeChain")]
    fn remove_chain(&self, ipv: &str, table: &str, chain: &str) -> zbus::Result<()>;

    #[zbus(name = "getAllChains")]
    fn get_all_chains(&self) -> zbus::Result<Vec<(String, String, String)>>;

    #[zbus(name = "addRule")]
    fn add_rule(
        &self,
        ipv: &str,
        table: &str,
        chain: &str,
        priority: i32,
        args: &[&str],
    ) -> zbus::Result<()>;

    #[zbus(name = "removeRule")]
    fn remove_rule(
        &self,
        ipv: &str,
        table: &str,
        chain: &str,
        priority: i32,
        args: &[&str],
    ) -> zbus::Result<()>;

    #[zbus(name = "getAllRules")]
    fn get_all_rules(&self) -> zbus::Result<Vec<RawRule>>;

    /// Runs iptables (ip6tables) with `args` and returns what it printed. Untracked: firewalld
    /// keeps no record of it, checks none of its arguments (the tracked addPassthrough does)
    /// and, unlike a direct rule, it does not set off firewalld 2.x's flush of iptables.
    #[zbus(name = "passthrough")]
    fn passthrough(&self, ipv: &str, args: &[&str]) -> zbus::Result<String>;
}

/// firewalld's whole permanent direct configuration: chains, rules, passthroughs.
pub type RawDirectSettings = (
    Vec<(String, String, String)>,
    Vec<RawRule>,
    Vec<(String, Vec<String>)>,
);

/// The permanent direct configuration as one value: read and replaced in one call each, where
/// `addRule` on this interface rewrites direct.xml once per rule.
#[proxy(
    interface = "org.fedoraproject.FirewallD1.config.direct",
    default_service = "org.fedoraproject.FirewallD1",
    default_path = "/org/fedoraproject/FirewallD1/config"
)]
pub trait ConfigDirect {
    #[zbus(name = "getSettings")]
    fn get_settings(&self) -> zbus::Result<RawDirectSettings>;

    #[zbus(name = "update")]
    fn update(&self, settings: &RawDirectSettings) -> zbus::Result<()>;
}

#[proxy(
    interface = "org.fedoraproject.FirewallD1.config",
    default_service = "org.fedoraproject.FirewallD1",
    default_path = "/org/fedoraproject/FirewallD1/config"
)]
pub trait Config {
    #[zbus(name = "getZoneByName")]
    fn get_zone_by_name(&self, zone: &str) -> zbus::Result<OwnedObjectPath>;

    #[zbus(name = "getPolicyNames")]
    fn get_policy_names(&self) -> zbus::Result<Vec<String>>;

    #[zbus(name = "getPolicyByName")]
    fn get_policy_by_name(&self, policy: &str) -> zbus::Result<OwnedObjectPath>;

    #[zbus(name = "addPolicy")]
    fn add_policy(
        &self,
        policy: &str,
        settings: HashMap<&str, Variant<'_>>,
    ) -> zbus::Result<OwnedObjectPath>;

    #[zbus(property, name = "FirewallBackend")]
    fn firewall_backend(&self) -> zbus::Result<String>;

    /// firewalld.conf's CleanupOnExit ("yes"/"no"); firewalld acts on a new value after its
    /// next reload or start.
    #[zbus(property, name = "CleanupOnExit")]
    fn cleanup_on_exit(&self) -> zbus::Result<String>;

    #[zbus(property, name = "CleanupOnExit")]
    fn set_cleanup_on_exit(&self, value: &str) -> zbus::Result<()>;

    /// Only on firewalld >= 2.3; reading it on older versions fails.
    #[zbus(property, name = "StrictForwardPorts")]
    fn strict_forward_ports(&self) -> zbus::Result<String>;
}

/// One permanent policy (`/org/fedoraproject/FirewallD1/config/policy/N`).
#[proxy(
    interface = "org.fedoraproject.FirewallD1.config.policy",
    default_service = "org.fedoraproject.FirewallD1"
)]
pub trait ConfigPolicy {
    #[zbus(name = "remove")]
    fn remove(&self) -> zbus::Result<()>;
}

/// One permanent zone (`/org/fedoraproject/FirewallD1/config/zone/N`).
#[proxy(
    interface = "org.fedoraproject.FirewallD1.config.zone",
    default_service = "org.fedoraproject.FirewallD1"
)]
pub trait ConfigZone {
    #[zbus(name = "getSettings2")]
    fn get_settings2(&self) -> zbus::Result<HashMap<String, OwnedVariant>>;

    #[zbus(name = "update2")]
    fn update2(&self, settings: HashMap<&str, Variant<'_>>) -> zbus::Result<()>;

    #[zbus(name = "getForwardPorts")]
    fn get_forward_ports(&self) -> zbus::Result<Vec<(String, String, String, String)>>;

    #[zbus(name = "addForwardPort")]
    fn add_forward_port(
        &self,
        port: &str,
        protocol: &str,
        toport: &str,
        toaddr: &str,
    ) -> zbus::Result<()>;

    #[zbus(name = "removeForwardPort")]
    fn remove_forward_port(
        &self,
        port: &str,
        protocol: &str,
        toport: &str,
        toaddr: &str,
    ) -> zbus::Result<()>;
}
