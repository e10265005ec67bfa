//! firewalld over D-Bus: runtime zones, the direct interface (runtime and permanent), and the
//! signals dockgate reacts to. Callers get dockgate's own types, never raw D-Bus tuples.

pub mod proxy;

use std::collections::BTreeMap;
use std::fmt;

use futures_util::stream::{self, BoxStream, StreamExt};
use ipnet::IpNet;
use serde::Serialize;
use zbus::Connection;
use zbus::proxy::CacheProperties;
use zbus::{OwnedVariant, Variant};

use crate::config::PortRange;
use crate::policy::{HostZones, ZoneView};
pub use crate::rules::{DirectChain, DirectRule, Family};

use self::proxy::{
    ConfigDirectProxy, ConfigPolicyProxy, ConfigProxy, ConfigZoneProxy, DirectProxy,
    FirewallD1Proxy, RawDirectSettings, RawRule, ZoneProxy,
};

#[cfg(test)]
pub mod fake;

/// Docker's chain for the admin's own forwarding rules; it sees packets after DNAT.
pub const DOCKER_USER: &str = "DOCKER-USER";

/// How long to wait for firewalld's `Reloaded` after asking for a reload.
const RELOAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// The D-Bus error name firewalld uses for every failure; the message starts with the code.
const FIREWALLD_EXCEPTION: &str = "org.fedoraproject.FirewallD1.Exception";

#[derive(Debug, thiserror::Error)]
pub enum FirewalldError {
    #[error(
        "firewalld is not running (nobody owns {} on the system bus)",
        proxy::BUS_NAME
    )]
    NotRunning,
    #[error("firewalld refused: {code}{}", if detail.is_empty() { String::new() } else { format!(": {detail}") })]
    Refused { code: ErrorCode, detail: String },
    #[error("talking to firewalld over D-Bus failed: {0}")]
    Bus(zbus::Error),
}

/// firewalld's error codes that dockgate acts on; the rest are kept as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorCode {
    AlreadyEnabled,
    NotEnabled,
    InvalidZone,
    ZoneConflict,
    ZoneAlreadySet,
    CommandFailed,
    InvalidInterface,
    Other(String),
}

impl ErrorCode {
    fn parse(code: &str) -> Self {
        match code {
            "ALREADY_ENABLED" => Self::AlreadyEnabled,
            "NOT_ENABLED" => Self::NotEnabled,
            "INVALID_ZONE" => Self::InvalidZone,
            "ZONE_CONFLICT" => Self::ZoneConflict,
            "ZONE_ALREADY_SET" => Self::ZoneAlreadySet,
            "COMMAND_FAILED" => Self::CommandFailed,
            "INVALID_INTERFACE" => Self::InvalidInterface,
            other => Self::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Self::AlreadyEnabled => "ALREADY_ENABLED",
            Self::NotEnabled => "NOT_ENABLED",
            Self::InvalidZone => "INVALID_ZONE",
            Self::ZoneConflict => "ZONE_CONFLICT",
            Self::ZoneAlreadySet => "ZONE_ALREADY_SET",
            Self::CommandFailed => "COMMAND_FAILED",
            Self::InvalidInterface => "INVALID_INTERFACE",
            Self::Other(code) => code,
        };
        f.write_str(text)
    }
}

impl From<zbus::Error> for FirewalldError {
    fn from(error: zbus::Error) -> Self {
        match &error {
            zbus::Error::MethodError(name, message, _) if name.as_str() == FIREWALLD_EXCEPTION => {
                let message = message.as_deref().unwrap_or_default();
                let (code, detail) = message.split_once(':').unwrap_or((message, ""));
                Self::Refused {
                    code: ErrorCode::parse(code.trim()),
                    detail: detail.trim().to_owned(),
                }
            }
            zbus::Error::FDO(fdo)
                if matches!(
                    **fdo,
                    zbus::fdo::Error::ServiceUnknown(_) | zbus::fdo::Error::NameHasNoOwner(_)
                ) =>
            {
                Self::NotRunning
            }
            // firewalld stopped between our look at the bus and the call.
            zbus::Error::FDO(fdo)
                if matches!(&**fdo, zbus::fdo::Error::NoReply(message)
                    if message.contains("disconnected")) =>
            {
                Self::NotRunning
            }
            _ => Self::Bus(error),
        }
    }
}

impl FirewalldError {
    pub fn code(&self) -> Option<&ErrorCode> {
        match self {
            Self::Refused { code, .. } => Some(code),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, FirewalldError>;

/// The runtime zone settings dockgate reads and manages.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ZoneSettings {
    pub target: String,
    pub services: Vec<String>,
    /// (port or range, protocol)
    pub ports: Vec<(String, String)>,
    pub interfaces: Vec<String>,
}

/// One value of a firewalld settings dictionary, if it is there and of the expected type.
fn dict_value<T: TryFrom<OwnedVariant>>(
    dict: &std::collections::HashMap<String, OwnedVariant>,
    key: &str,
) -> Option<T> {
    dict.get(key)
        .and_then(|value| value.try_clone().ok())
        .and_then(|value| T::try_from(value).ok())
}

/// firewalld's ("8080" or "1000-2000", "tcp"); None for protocols dockgate does not publish.
fn port_range(port: &str, protocol: &str) -> Option<PortRange> {
    format!("{port}/{protocol}").parse().ok()
}

impl ZoneSettings {
    fn from_dict(dict: &std::collections::HashMap<String, OwnedVariant>) -> Self {
        Self {
            target: dict_value(dict, "target").unwrap_or_else(|| "default".to_owned()),
            services: dict_value(dict, "services").unwrap_or_default(),
            ports: dict_value(dict, "ports").unwrap_or_default(),
            interfaces: dict_value(dict, "interfaces").unwrap_or_default(),
        }
    }
}

/// What a zone lets its interfaces reach on the host itself; only the keys given are set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZoneAccess {
    pub target: Option<String>,
    pub services: Option<Vec<String>>,
    /// (port or range, protocol)
    pub ports: Option<Vec<(String, String)>>,
}

impl ZoneAccess {
    pub fn is_empty(&self) -> bool {
        self.target.is_none() && self.services.is_none() && self.ports.is_none()
    }

    fn to_dict(&self, with_target: bool) -> std::collections::HashMap<&'static str, Variant<'_>> {
        let mut dict = std::collections::HashMap::new();
        if let Some(target) = self.target.as_deref().filter(|_| with_target) {
            dict.insert("target", Variant::from(target));
        }
        if let Some(services) = &self.services {
            dict.insert("services", Variant::from(services.clone()));
        }
        if let Some(ports) = &self.ports {
            dict.insert("ports", Variant::from(ports.clone()));
        }
        dict
    }
}

/// A forward-port of a zone, as firewalld spells it: a port or range, its protocol, and where
/// it leads (an empty `toport` keeps the port).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
pub struct ForwardPort {
    pub port: String,
    pub protocol: String,
    pub toport: String,
    pub toaddr: String,
}

/// A zone's runtime bindings as `getActiveZones` reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ActiveZone {
    pub interfaces: Vec<String>,
    pub sources: Vec<String>,
}

/// An interface entering, leaving or changing zone at run time (Docker adds its bridges to
/// zone `docker` this way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZoneEvent {
    InterfaceAdded {
        zone: String,
        interface: String,
    },
    InterfaceRemoved {
        zone: String,
        interface: String,
    },
    ZoneOfInterfaceChanged {
        zone: String,
        interface: String,
    },
    /// A port, service or source was added to or removed from a zone at run time.
    AccessChanged {
        zone: String,
    },
}

/// firewalld appearing on or leaving the system bus. firewalld sends no `Reloaded` when it
/// starts, so its arrival is the cue to re-apply after a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    Appeared,
    Vanished,
}

/// Which direct configuration a call is about: firewalld's running state, or the permanent
/// configuration it re-applies itself on every start and reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    Runtime,
    Permanent,
}

/// firewalld's permanent direct configuration: the ipv4/ipv6 chains and rules dockgate reads
/// and edits, and everything else (ebtables entries, passthroughs), which is written back as
/// it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermanentDirect {
    pub chains: Vec<DirectChain>,
    pub rules: Vec<DirectRule>,
    untouched: RawDirectSettings,
}

#[cfg(test)]
impl PermanentDirect {
    /// A configuration with no ebtables entries or passthroughs, for tests of code that edits one.
    pub fn for_tests(chains: Vec<DirectChain>, rules: Vec<DirectRule>) -> Self {
        Self {
            chains,
            rules,
            untouched: Default::default(),
        }
    }
}

/// What firewalld is, for reports: version, backend and settings that change Docker's exposure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FirewalldInfo {
    pub version: String,
    pub backend: String,
    pub default_zone: String,
    /// firewalld >= 2.3 only: with "yes", firewalld itself blocks DNAT it did not create.
    pub strict_forward_ports: Option<bool>,
}

#[derive(Clone)]
pub struct Firewalld {
    connection: Connection,
    main: FirewallD1Proxy<'static>,
    zone: ZoneProxy<'static>,
    direct: DirectProxy<'static>,
    config: ConfigProxy<'static>,
    config_direct: DirectProxy<'static>,
    config_direct_settings: ConfigDirectProxy<'static>,
}

/// The longest one call to firewalld may take: removing 1000 runtime direct rules took 20 s
/// in the sandbox. Without a limit, a call firewalld never answers would stall the daemon.
pub const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// A connection to the system bus whose method calls give up after [`CALL_TIMEOUT`].
pub async fn system_bus() -> zbus::Result<Connection> {
    zbus::connection::Builder::system()
        .method_timeout(CALL_TIMEOUT)
        .build()
        .await
}

impl Firewalld {
    /// Proxies only; firewalld need not be running yet. Properties are never cached: a cache
    /// would outlive a firewalld restart.
    pub async fn new(connection: &Connection) -> Result<Self> {
        Ok(Self {
            connection: connection.clone(),
            main: FirewallD1Proxy::builder(connection)
                .cache_properties(CacheProperties::No)
                .build()
                .await?,
            zone: ZoneProxy::builder(connection)
                .cache_properties(CacheProperties::No)
                .build()
                .await?,
            direct: DirectProxy::builder(connection)
                .cache_properties(CacheProperties::No)
                .build()
                .await?,
            config: ConfigProxy::builder(connection)
                .cache_properties(CacheProperties::No)
                .build()
                .await?,
            config_direct: DirectProxy::builder(connection)
                .interface(proxy::CONFIG_DIRECT_INTERFACE)
                .path(proxy::CONFIG_PATH)
                .cache_properties(CacheProperties::No)
                .build()
                .await?,
            config_direct_settings: ConfigDirectProxy::builder(connection)
                .cache_properties(CacheProperties::No)
                .build()
                .await?,
        })
    }

    pub async fn info(&self) -> Result<FirewalldInfo> {
        let strict_forward_ports = match self.config.strict_forward_ports().await {
            Ok(value) => Some(value.eq_ignore_ascii_case("yes")),
            Err(error) => match FirewalldError::from(error) {
                FirewalldError::NotRunning => return Err(FirewalldError::NotRunning),
                // firewalld < 2.3 has no such property.
                _ => None,
            },
        };
        Ok(FirewalldInfo {
            version: self.main.version().await?,
            backend: self.config.firewall_backend().await?,
            default_zone: self.main.get_default_zone().await?,
            strict_forward_ports,
        })
    }

    /// What firewalld lets in to the host itself from outside, for the ports docker-proxy
    /// serves there: the default zone and every zone with a binding, with the ports each
    /// opens (its own and its services').
    pub async fn host_zones(&self) -> Result<HostZones> {
        let default_zone = self.main.get_default_zone().await?;
        let mut names: Vec<String> = self.zone.get_active_zones().await?.into_keys().collect();
        if !names.contains(&default_zone) {
            names.push(default_zone.clone());
        }
        let mut service_ports: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        let mut zones = BTreeMap::new();
        let mut forwarded = Vec::new();
        for name in names {
            let dict = self.zone.get_zone_settings2(&name).await?;
            let forward_ports: Vec<(String, String, String, String)> =
                dict_value(&dict, "forward_ports").unwrap_or_default();
            forwarded.extend(
                forward_ports
                    .iter()
                    .filter(|(_, _, _, toaddr)| !toaddr.is_empty())
                    .filter_map(|(port, protocol, _, _)| {
                        let range = port_range(port, protocol)?;
                        Some((range.first, range.last))
                    }),
            );
            let settings = ZoneSettings::from_dict(&dict);
            let sources: Vec<String> = dict_value(&dict, "sources").unwrap_or_default();
            let mut open: Vec<(PortRange, String)> = settings
                .ports
                .iter()
                .filter_map(|(port, protocol)| {
                    let range = port_range(port, protocol)?;
                    Some((range, format!("port {range}")))
                })
                .collect();
            for service in &settings.services {
                if !service_ports.contains_key(service) {
                    // A service firewalld cannot describe opens nothing we could name.
                    let ports = match self.main.get_service_settings2(service).await {
                        Ok(dict) => dict_value(&dict, "ports").unwrap_or_default(),
                        Err(error) => match FirewalldError::from(error) {
                            FirewalldError::NotRunning => return Err(FirewalldError::NotRunning),
                            _ => Vec::new(),
                        },
                    };
                    service_ports.insert(service.clone(), ports);
                }
                open.extend(
                    service_ports[service]
                        .iter()
                        .filter_map(|(port, protocol)| {
                            Some((port_range(port, protocol)?, format!("service {service}")))
                        }),
                );
            }
            zones.insert(
                name,
                ZoneView {
                    target: settings.target,
                    open,
                    sources: sources
                        .iter()
                        .filter_map(|source| {
                            source
                                .parse::<IpNet>()
                                .or_else(|_| source.parse::<std::net::IpAddr>().map(IpNet::from))
                                .ok()
                        })
                        .collect(),
                    interfaces: settings.interfaces,
                },
            );
        }
        let strict_forward_ports = self.info().await?.strict_forward_ports.unwrap_or(false);
        Ok(HostZones {
            default_zone,
            zones,
            strict_forward_ports,
            forwarded,
        })
    }

    async fn reload(&self) -> Result<()> {
        Ok(self.main.reload().await?)
    }

    pub async fn zones(&self) -> Result<Vec<String>> {
        Ok(self.zone.get_zones().await?)
    }

    /// The zone an interface is bound to at run time; None when it is bound to none.
    pub async fn zone_of_interface(&self, interface: &str) -> Result<Option<String>> {
        let zone = self.zone.get_zone_of_interface(interface).await?;
        Ok(Some(zone).filter(|zone| !zone.is_empty()))
    }

    fn direct(&self, layer: Layer) -> &DirectProxy<'static> {
        match layer {
            Layer::Runtime => &self.direct,
            Layer::Permanent => &self.config_direct,
        }
    }

    async fn permanent_zone(&self, zone: &str) -> Result<ConfigZoneProxy<'static>> {
        let path = self.config.get_zone_by_name(zone).await?;
        Ok(ConfigZoneProxy::builder(&self.connection)
            .path(path)
            .cache_properties(CacheProperties::No)
            .build()
            .await?)
    }

    // Signals.

    /// Every `Reloaded` signal. After one, firewalld has dropped all runtime direct rules and
    /// chains that are not in its permanent configuration.
    pub async fn reloaded(&self) -> Result<BoxStream<'static, ()>> {
        Ok(self.main.receive_reloaded().await?.map(|_| ()).boxed())
    }

    /// Interfaces added to, removed from or moved between zones at run time.
    pub async fn zone_events(&self) -> Result<BoxStream<'static, ZoneEvent>> {
        let added = self
            .zone
            .receive_interface_added()
            .await?
            .filter_map(|signal| async move {
                let args = signal.args().ok()?;
                Some(ZoneEvent::InterfaceAdded {
                    zone: args.zone,
                    interface: args.interface,
                })
            });
        let removed =
            self.zone
                .receive_interface_removed()
                .await?
                .filter_map(|signal| async move {
                    let args = signal.args().ok()?;
                    Some(ZoneEvent::InterfaceRemoved {
                        zone: args.zone,
                        interface: args.interface,
                    })
                });
        let changed = self
            .zone
            .receive_zone_of_interface_changed()
            .await?
            .filter_map(|signal| async move {
                let args = signal.args().ok()?;
                Some(ZoneEvent::ZoneOfInterfaceChanged {
                    zone: args.zone,
                    interface: args.interface,
                })
            });
        // Each of these carries the zone; the rest does not matter here. The six signals are
        // six types, hence a macro rather than a function.
        macro_rules! zone_of {
            ($signals:ident) => {
                self.zone
                    .$signals()
                    .await?
                    .filter_map(|signal| async move { Some(signal.args().ok()?.zone) })
                    .boxed()
            };
        }
        let access = stream::select_all([
            zone_of!(receive_port_added),
            zone_of!(receive_port_removed),
            zone_of!(receive_service_added),
            zone_of!(receive_service_removed),
            zone_of!(receive_source_added),
            zone_of!(receive_source_removed),
        ])
        .map(|zone| ZoneEvent::AccessChanged { zone });
        Ok(stream::select(
            stream::select(stream::select(added, removed), changed),
            access,
        )
        .boxed())
    }

    /// firewalld appearing on and leaving the system bus (start, stop, restart, crash).
    pub async fn presence(&self) -> Result<BoxStream<'static, Presence>> {
        let dbus = zbus::fdo::DBusProxy::new(&self.connection).await?;
        let changes = dbus
            .receive_name_owner_changed_with_args(&[(0, proxy::BUS_NAME)])
            .await?;
        Ok(changes
            .filter_map(|signal| async move {
                let args = signal.args().ok()?;
                Some(if args.new_owner.is_some() {
                    Presence::Appeared
                } else {
                    Presence::Vanished
                })
            })
            .boxed())
    }
}

/// The calls the applier makes. [`Firewalld`] makes them on the real firewalld; the unit
/// tests' in-memory fake (`fake.rs`) checks after every single one that no denied connection
/// gets through.
// The applier runs on the daemon's own task and is never spawned, so its futures need not be
// Send; plain `async fn` keeps the trait readable.
#[allow(async_fn_in_trait)]
pub trait Firewall {
    async fn is_running(&self) -> Result<bool>;
    /// firewalld's major version (1 on RHEL 9, 2 on RHEL 10 and Fedora).
    async fn major_version(&self) -> Result<u32>;

    async fn chains(&self, layer: Layer) -> Result<Vec<DirectChain>>;
    async fn rules(&self, layer: Layer) -> Result<Vec<DirectRule>>;
    async fn add_chain(&self, layer: Layer, chain: &DirectChain) -> Result<()>;
    async fn remove_chain(&self, layer: Layer, chain: &DirectChain) -> Result<()>;
    async fn add_rule(&self, layer: Layer, rule: &DirectRule) -> Result<()>;
    async fn remove_rule(&self, layer: Layer, rule: &DirectRule) -> Result<()>;
    /// The whole permanent direct configuration, read in one call.
    async fn permanent_direct(&self) -> Result<PermanentDirect>;
    /// Replaces the whole permanent direct configuration in one call (firewalld writes
    /// direct.xml once).
    async fn set_permanent_direct(&self, settings: &PermanentDirect) -> Result<()>;
    /// Reloads and waits for firewalld's `Reloaded` (Docker rebuilds its rules on that
    /// signal). The runtime configuration becomes the permanent one.
    async fn reload_and_wait(&self) -> Result<()>;

    /// firewalld.conf's CleanupOnExit, as written there ("yes", "no", "true", "false").
    async fn cleanup_on_exit(&self) -> Result<String>;
    /// Writes CleanupOnExit to firewalld.conf; firewalld uses it from its next reload or start.
    async fn set_cleanup_on_exit(&self, value: &str) -> Result<()>;

    async fn zone_exists(&self, zone: &str) -> Result<bool>;
    async fn zone_settings(&self, layer: Layer, zone: &str) -> Result<ZoneSettings>;
    /// Sets the given host-access keys of a zone in one call. At run time the target is left
    /// out: firewalld only changes a target in the permanent configuration (on reload).
    async fn set_zone_access(&self, layer: Layer, zone: &str, access: &ZoneAccess) -> Result<()>;
    async fn policy_exists(&self, name: &str) -> Result<bool>;
    /// Adds a permanent policy letting traffic from `ingress` to `egress` zones pass (target
    /// ACCEPT); it takes effect on the next reload.
    async fn add_accept_policy(
        &self,
        name: &str,
        description: &str,
        ingress: &str,
        egress: &str,
    ) -> Result<()>;
    async fn remove_policy(&self, name: &str) -> Result<()>;

    async fn active_zones(&self) -> Result<BTreeMap<String, ActiveZone>>;
    /// firewalld >= 2.3's StrictForwardPorts; false where firewalld has no such setting.
    async fn strict_forward_ports(&self) -> Result<bool>;
    /// The zone a new connection from outside meets: the zone of the first of
    /// `external_interfaces` bound to one, else the default zone.
    async fn outside_zone(&self, external_interfaces: &[String]) -> Result<String>;
    async fn forward_ports(&self, layer: Layer, zone: &str) -> Result<Vec<ForwardPort>>;
    async fn add_forward_port(&self, layer: Layer, zone: &str, port: &ForwardPort) -> Result<()>;
    async fn remove_forward_port(&self, layer: Layer, zone: &str, port: &ForwardPort)
    -> Result<()>;
    /// One chain of the kernel's rules as `iptables -S` prints it, read through firewalld's
    /// D-Bus passthrough (firewalld runs iptables; dockgate runs none itself): to see Docker's
    /// rules come back after a reload, which firewalld's own API does not show.
    async fn kernel_chain(&self, family: Family, table: &str, chain: &str) -> Result<String>;
    /// What firewalld lets in to the host itself from outside (see [`Firewalld::host_zones`]).
    async fn host_zones(&self) -> Result<HostZones>;
    /// Binds an interface to a zone at run time, moving it out of any zone it is in.
    async fn change_zone_of_interface(&self, zone: &str, interface: &str) -> Result<()>;
}

impl Firewall for Firewalld {
    async fn is_running(&self) -> Result<bool> {
        let dbus = zbus::fdo::DBusProxy::new(&self.connection).await?;
        let name = proxy::BUS_NAME.try_into()?;
        Ok(dbus.name_has_owner(name).await.map_err(zbus::Error::from)?)
    }

    async fn major_version(&self) -> Result<u32> {
        Ok(major_version(&self.main.version().await?))
    }

    async fn chains(&self, layer: Layer) -> Result<Vec<DirectChain>> {
        Ok(chains_from_raw(self.direct(layer).get_all_chains().await?))
    }

    async fn rules(&self, layer: Layer) -> Result<Vec<DirectRule>> {
        Ok(rules_from_raw(self.direct(layer).get_all_rules().await?))
    }

    async fn add_chain(&self, layer: Layer, chain: &DirectChain) -> Result<()> {
        Ok(self
            .direct(layer)
            .add_chain(chain.family.as_str(), &chain.table, &chain.chain)
            .await?)
    }

    async fn remove_chain(&self, layer: Layer, chain: &DirectChain) -> Result<()> {
        Ok(self
            .direct(layer)
            .remove_chain(chain.family.as_str(), &chain.table, &chain.chain)
            .await?)
    }

    async fn add_rule(&self, layer: Layer, rule: &DirectRule) -> Result<()> {
        Ok(self
            .direct(layer)
            .add_rule(
                rule.family.as_str(),
                &rule.table,
                &rule.chain,
                rule.priority,
                &arg_refs(rule),
            )
            .await?)
    }

    async fn remove_rule(&self, layer: Layer, rule: &DirectRule) -> Result<()> {
        Ok(self
            .direct(layer)
            .remove_rule(
                rule.family.as_str(),
                &rule.table,
                &rule.chain,
                rule.priority,
                &arg_refs(rule),
            )
            .await?)
    }

    async fn permanent_direct(&self) -> Result<PermanentDirect> {
        let (chains, rules, passthroughs) = self.config_direct_settings.get_settings().await?;
        let (chains, other_chains) = chains
            .into_iter()
            .partition(|(ipv, _, _)| Family::from_ipv(ipv).is_some());
        let (rules, other_rules) = rules
            .into_iter()
            .partition(|(ipv, ..)| Family::from_ipv(ipv).is_some());
        Ok(PermanentDirect {
            chains: chains_from_raw(chains),
            rules: rules_from_raw(rules),
            untouched: (other_chains, other_rules, passthroughs),
        })
    }

    async fn set_permanent_direct(&self, settings: &PermanentDirect) -> Result<()> {
        let (other_chains, other_rules, passthroughs) = &settings.untouched;
        let chains = settings
            .chains
            .iter()
            .map(|chain| {
                (
                    chain.family.as_str().to_owned(),
                    chain.table.clone(),
                    chain.chain.clone(),
                )
            })
            .chain(other_chains.iter().cloned())
            .collect();
        let rules = settings
            .rules
            .iter()
            .map(|rule| {
                (
                    rule.family.as_str().to_owned(),
                    rule.table.clone(),
                    rule.chain.clone(),
                    rule.priority,
                    rule.args.clone(),
                )
            })
            .chain(other_rules.iter().cloned())
            .collect();
        let raw: RawDirectSettings = (chains, rules, passthroughs.clone());
        Ok(self.config_direct_settings.update(&raw).await?)
    }

    async fn reload_and_wait(&self) -> Result<()> {
        let mut reloaded = self.reloaded().await?;
        self.reload().await?;
        if tokio::time::timeout(RELOAD_TIMEOUT, reloaded.next())
            .await
            .is_err()
        {
            tracing::warn!("firewalld sent no Reloaded within {RELOAD_TIMEOUT:?}");
        }
        Ok(())
    }

    async fn cleanup_on_exit(&self) -> Result<String> {
        Ok(self.config.cleanup_on_exit().await?)
    }

    async fn set_cleanup_on_exit(&self, value: &str) -> Result<()> {
        Ok(self.config.set_cleanup_on_exit(value).await?)
    }

    async fn zone_exists(&self, zone: &str) -> Result<bool> {
        Ok(self.zones().await?.iter().any(|name| name == zone))
    }

    async fn zone_settings(&self, layer: Layer, zone: &str) -> Result<ZoneSettings> {
        let dict = match layer {
            Layer::Runtime => self.zone.get_zone_settings2(zone).await?,
            Layer::Permanent => self.permanent_zone(zone).await?.get_settings2().await?,
        };
        Ok(ZoneSettings::from_dict(&dict))
    }

    async fn set_zone_access(&self, layer: Layer, zone: &str, access: &ZoneAccess) -> Result<()> {
        match layer {
            Layer::Runtime => Ok(self
                .zone
                .set_zone_settings2(zone, access.to_dict(false))
                .await?),
            Layer::Permanent => Ok(self
                .permanent_zone(zone)
                .await?
                .update2(access.to_dict(true))
                .await?),
        }
    }

    async fn policy_exists(&self, name: &str) -> Result<bool> {
        Ok(self
            .config
            .get_policy_names()
            .await?
            .iter()
            .any(|policy| policy == name))
    }

    async fn add_accept_policy(
        &self,
        name: &str,
        description: &str,
        ingress: &str,
        egress: &str,
    ) -> Result<()> {
        let settings = std::collections::HashMap::from([
            ("description", Variant::from(description)),
            ("target", Variant::from("ACCEPT")),
            ("ingress_zones", Variant::from(vec![ingress])),
            ("egress_zones", Variant::from(vec![egress])),
        ]);
        self.config.add_policy(name, settings).await?;
        Ok(())
    }

    async fn remove_policy(&self, name: &str) -> Result<()> {
        let path = self.config.get_policy_by_name(name).await?;
        ConfigPolicyProxy::builder(&self.connection)
            .path(path)
            .cache_properties(CacheProperties::No)
            .build()
            .await?
            .remove()
            .await?;
        Ok(())
    }

    async fn active_zones(&self) -> Result<BTreeMap<String, ActiveZone>> {
        let raw = self.zone.get_active_zones().await?;
        Ok(raw
            .into_iter()
            .map(|(zone, mut bindings)| {
                let active = ActiveZone {
                    interfaces: bindings.remove("interfaces").unwrap_or_default(),
                    sources: bindings.remove("sources").unwrap_or_default(),
                };
                (zone, active)
            })
            .collect())
    }

    async fn strict_forward_ports(&self) -> Result<bool> {
        match self.config.strict_forward_ports().await {
            Ok(value) => Ok(value.eq_ignore_ascii_case("yes")),
            Err(error) => match FirewalldError::from(error) {
                FirewalldError::NotRunning => Err(FirewalldError::NotRunning),
                // firewalld < 2.3 has no such property.
                _ => Ok(false),
            },
        }
    }

    async fn outside_zone(&self, external_interfaces: &[String]) -> Result<String> {
        let active = self.active_zones().await?;
        let bound = external_interfaces.iter().find_map(|interface| {
            active
                .iter()
                .find(|(_, zone)| zone.interfaces.contains(interface))
                .map(|(name, _)| name.clone())
        });
        match bound {
            Some(zone) => Ok(zone),
            None => Ok(self.main.get_default_zone().await?),
        }
    }

    async fn forward_ports(&self, layer: Layer, zone: &str) -> Result<Vec<ForwardPort>> {
        Ok(match layer {
            Layer::Runtime => self
                .zone
                .get_forward_ports(zone)
                .await?
                .into_iter()
                .filter_map(|fields| match fields.as_slice() {
                    [port, protocol, toport, toaddr] => Some(ForwardPort {
                        port: port.clone(),
                        protocol: protocol.clone(),
                        toport: toport.clone(),
                        toaddr: toaddr.clone(),
                    }),
                    _ => None,
                })
                .collect(),
            Layer::Permanent => self
                .permanent_zone(zone)
                .await?
                .get_forward_ports()
                .await?
                .into_iter()
                .map(|(port, protocol, toport, toaddr)| ForwardPort {
                    port,
                    protocol,
                    toport,
                    toaddr,
                })
                .collect(),
        })
    }

    async fn add_forward_port(&self, layer: Layer, zone: &str, port: &ForwardPort) -> Result<()> {
        let ForwardPort {
            port,
            protocol,
            toport,
            toaddr,
        } = port;
        match layer {
            Layer::Runtime => {
                self.zone
                    .add_forward_port(zone, port, protocol, toport, toaddr, 0)
                    .await?;
            }
            Layer::Permanent => {
                self.permanent_zone(zone)
                    .await?
                    .add_forward_port(port, protocol, toport, toaddr)
                    .await?
            }
        }
        Ok(())
    }

    async fn remove_forward_port(
        &self,
        layer: Layer,
        zone: &str,
        port: &ForwardPort,
    ) -> Result<()> {
        let ForwardPort {
            port,
            protocol,
            toport,
            toaddr,
        } = port;
        match layer {
            Layer::Runtime => {
                self.zone
                    .remove_forward_port(zone, port, protocol, toport, toaddr)
                    .await?;
            }
            Layer::Permanent => {
                self.permanent_zone(zone)
                    .await?
                    .remove_forward_port(port, protocol, toport, toaddr)
                    .await?
            }
        }
        Ok(())
    }

    async fn kernel_chain(&self, family: Family, table: &str, chain: &str) -> Result<String> {
        Ok(self
            .direct
            .passthrough(family.as_str(), &["-t", table, "-S", chain])
            .await?)
    }

    async fn host_zones(&self) -> Result<HostZones> {
        Firewalld::host_zones(self).await
    }

    async fn change_zone_of_interface(&self, zone: &str, interface: &str) -> Result<()> {
        self.zone.change_zone_of_interface(zone, interface).await?;
        Ok(())
    }
}

/// "2.5.2" -> 2; an unparsable version counts as the oldest.
fn major_version(version: &str) -> u32 {
    version
        .split('.')
        .next()
        .and_then(|major| major.trim().parse().ok())
        .unwrap_or(0)
}

fn arg_refs(rule: &DirectRule) -> Vec<&str> {
    rule.args.iter().map(String::as_str).collect()
}

fn chains_from_raw(raw: Vec<(String, String, String)>) -> Vec<DirectChain> {
    raw.into_iter()
        .filter_map(|(ipv, table, chain)| {
            Some(DirectChain {
                family: Family::from_ipv(&ipv)?,
                table,
                chain,
            })
        })
        .collect()
}

fn rules_from_raw(raw: Vec<RawRule>) -> Vec<DirectRule> {
    raw.into_iter()
        .filter_map(|(ipv, table, chain, priority, args)| {
            Some(DirectRule {
                family: Family::from_ipv(&ipv)?,
                table,
                chain,
                priority,
                args,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn method_error(name: &str, message: &str) -> zbus::Error {
        let call = zbus::message::Message::method_call("/", "m")
            .build(&())
            .unwrap();
        let reply = zbus::message::Message::error(&call.header(), name)
            .build(&(message,))
            .unwrap();
        zbus::Error::from(reply)
    }

    #[test]
    fn firewalld_exceptions_become_typed_codes() {
        let error = FirewalldError::from(method_error(
            FIREWALLD_EXCEPTION,
            "ZONE_CONFLICT: 'docker0' already bound to 'internal'",
        ));
        assert_eq!(error.code(), Some(&ErrorCode::ZoneConflict));
        assert_eq!(
            error.to_string(),
            "firewalld refused: ZONE_CONFLICT: 'docker0' already bound to 'internal'"
        );

        let bare = FirewalldError::from(method_error(FIREWALLD_EXCEPTION, "ALREADY_ENABLED"));
        assert_eq!(bare.code(), Some(&ErrorCode::AlreadyEnabled));
        assert_eq!(bare.to_string(), "firewalld refused: ALREADY_ENABLED");

        let odd = FirewalldError::from(method_error(FIREWALLD_EXCEPTION, "RT_TO_PERM_FAILED: x"));
        assert_eq!(
            odd.code(),
            Some(&ErrorCode::Other("RT_TO_PERM_FAILED".into()))
        );
    }

    #[test]
    fn an_absent_firewalld_is_not_running_rather_than_a_bus_error() {
        let error = FirewalldError::from(method_error(
            "org.freedesktop.DBus.Error.ServiceUnknown",
            "The name is not activatable",
        ));
        assert!(matches!(error, FirewalldError::NotRunning), "{error:?}");
        let error = FirewalldError::from(method_error(
            "org.freedesktop.DBus.Error.NoReply",
            "Message recipient disconnected from message bus without replying",
        ));
        assert!(matches!(error, FirewalldError::NotRunning), "{error:?}");
        let error = FirewalldError::from(method_error(
            "org.freedesktop.DBus.Error.NoReply",
            "Did not receive a reply.",
        ));
        assert!(matches!(error, FirewalldError::Bus(_)), "{error:?}");
    }

    #[test]
    fn major_versions() {
        assert_eq!(major_version("1.3.3"), 1);
        assert_eq!(major_version("2.5.2"), 2);
        assert_eq!(major_version("garbage"), 0);
    }

    #[test]
    fn rules_of_other_families_are_skipped() {
        let rules = rules_from_raw(vec![
            (
                "eb".into(),
                "filter".into(),
                "INPUT".into(),
                0,
                vec!["-j".into(), "ACCEPT".into()],
            ),
            (
                "ipv6".into(),
                "filter".into(),
                "DOCKER-USER".into(),
                3,
                vec!["-j".into(), "DROP".into()],
            ),
        ]);
        assert_eq!(
            rules,
            vec![DirectRule {
                family: Family::Ipv6,
                table: "filter".into(),
                chain: "DOCKER-USER".into(),
                priority: 3,
                args: vec!["-j".into(), "DROP".into()],
            }]
        );
    }
}
