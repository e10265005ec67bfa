//! Docker through bollard: the ports containers publish, the bridges of Docker's networks, and
//! an event stream that survives dockerd restarts.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::{BollardRequest, ClientVersion};

use bollard::models::{ContainerSummary, EventMessage, EventMessageTypeEnum, PortSummaryTypeEnum};
use bollard::query_parameters::{
    EventsOptionsBuilder, ListContainersOptionsBuilder, ListNetworksOptionsBuilder,
};
use futures_util::StreamExt;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::plan::DockerView;
use tokio::sync::mpsc;

pub const DEFAULT_SOCKET: &str = "/run/docker.sock";
/// Docker's option that gives a bridge network's Linux bridge its name.
const BRIDGE_NAME_OPTION: &str = "com.docker.network.bridge.name";
/// The names Docker gives its bridges itself, docker0 and `br-<network id>`, in iptables'
/// spelling (a trailing `+` matches any rest). A bridge named with
/// com.docker.network.bridge.name is not among them.
pub const BRIDGE_PATTERNS: [&str; 2] = ["docker0", "br-+"];
/// How long one request to dockerd may take. A hung dockerd (stopped, deadlocked: see
/// moby/moby#50619) holds up every reconcile this long, callers included; its last known view
/// stands in meanwhile, so a short wait costs no protection.
const REQUEST_TIMEOUT_SECS: u64 = 10;

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("Docker is not reachable at {socket}: {source}")]
    Unreachable {
        socket: String,
        source: bollard::errors::Error,
    },
    #[error("Docker request failed: {0}")]
    Request(#[from] bollard::errors::Error),
}

pub type Result<T> = std::result::Result<T, DockerError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Protocol {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        match text {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            "sctp" => Ok(Protocol::Sctp),
            other => Err(format!(
                "unknown protocol '{other}' (expected tcp, udp or sctp)"
            )),
        }
    }
}

/// One port a running container publishes: a host port Docker DNATs (or docker-proxy serves),
/// or, on a network in gateway mode "routed", the container's own address and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PublishedPort {
    pub container: String,
    pub container_id: String,
    /// The host address the port is bound to: 0.0.0.0 or :: for every address; for a routed
    /// port the container's own address.
    pub host_ip: IpAddr,
    /// The host port; for a routed port the container's.
    pub host_port: u16,
    pub protocol: Protocol,
    /// The container's address of the same family that Docker forwards to (None when the
    /// container has no address of that family, e.g. IPv6 disabled on its network).
    pub container_ip: Option<IpAddr>,
    pub container_port: u16,
    /// Gateway mode "routed" (Docker 27 and later): no host port and no DNAT; clients that
    /// route to the container's network reach its address directly.
    #[serde(default)]
    pub routed: bool,
}

impl PublishedPort {
    /// Bound to a loopback address only: not reachable from other hosts.
    pub fn is_loopback_only(&self) -> bool {
        self.host_ip.is_loopback()
    }
}

/// A Docker network and the Linux bridge that carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Network {
    pub id: String,
    pub name: String,
    pub driver: String,
    /// The bridge interface (bridge driver only): docker0, br-<id prefix>, or the name given
    /// with com.docker.network.bridge.name.
    pub bridge: Option<String>,
    pub subnets: Vec<IpNet>,
}

/// What the event watcher reports. `Resynced` comes with every connection, the first included:
/// events may have been missed before it, so consumers re-read everything then; every event
/// after that moment follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerEvent {
    Container { action: String, id: String },
    Network { action: String, id: String },
    Disconnected,
    Resynced,
}

/// Docker as dockgate reads it: a trait, so that the unit tests can take Docker away.
#[allow(async_fn_in_trait)]
pub trait DockerApi {
    /// What Docker publishes and which bridges carry its networks.
    async fn view(&self) -> Result<DockerView>;
    /// When Docker last finished re-creating its firewall rules after a firewalld reload, in
    /// Unix seconds (Docker 28.1 and later, API 1.49: `FirewallBackend` `ReloadedAt` of
    /// `docker info`, set once the rebuild is over); None when Docker does not say.
    async fn reloaded_at(&self) -> Result<Option<u64>>;
}

impl DockerApi for Docker {
    async fn view(&self) -> Result<DockerView> {
        let ports = self.published_ports().await?;
        let bridges = self
            .networks()
            .await?
            .into_iter()
            .filter_map(|network| network.bridge)
            .collect();
        Ok(DockerView { ports, bridges })
    }

    async fn reloaded_at(&self) -> Result<Option<u64>> {
        let info = self.request(async |client| client.info().await).await?;
        Ok(info
            .firewall_backend
            .and_then(|backend| backend.info)
            .into_iter()
            .flatten()
            .find(|pair| pair.first().is_some_and(|label| label == "ReloadedAt"))
            .and_then(|pair| unix_seconds(pair.get(1)?)))
    }
}

/// bollard 0.21 means to put "/vX.Y" before every path, but its URL join drops it (the request
/// goes out unversioned and Docker answers at its own newest version, whatever the client
/// understands): the version is put there here. Only where it is missing, so that a bollard
/// that puts it there itself stays right.
fn with_version(mut request: BollardRequest, prefix: &str) -> BollardRequest {
    if request.uri().path().starts_with("/v1.") {
        return request;
    }
    let mut parts = request.uri().clone().into_parts();
    let rest = parts
        .path_and_query
        .as_ref()
        .map_or("/", |path| path.as_str());
    if let Ok(path) = format!("{prefix}{rest}").parse()
        && let Ok(uri) = {
            parts.path_and_query = Some(path);
            http::Uri::from_parts(parts)
        }
    {
        *request.uri_mut() = uri;
    }
    request
}

/// An RFC 3339 time as Docker writes it (Go's time.RFC3339: whole seconds, then "Z" or the
/// daemon's offset such as "+01:00") in Unix seconds. humantime parses "Z" only, so the
/// offset is taken off by hand; chrono or time would be a crate for these few lines.
fn unix_seconds(text: &str) -> Option<u64> {
    let (local, offset) = text.split_at_checked(19)?;
    let local = humantime::parse_rfc3339(&format!("{local}Z"))
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs() as i64;
    let offset = match offset {
        "Z" => 0,
        _ => {
            let sign = match offset.get(..1)? {
                "+" => 1,
                "-" => -1,
                _ => return None,
            };
            let (hours, minutes) = offset.get(1..)?.split_once(':')?;
            sign * (hours.parse::<i64>().ok()? * 3600 + minutes.parse::<i64>().ok()? * 60)
        }
    };
    u64::try_from(local - offset).ok()
}

#[derive(Clone)]
pub struct Docker {
    socket: String,
    /// The API version agreed with the dockerd that answers now: None until it is asked, and
    /// again once a request fails (the next dockerd may be another version: an upgrade).
    version: Arc<Mutex<Option<ClientVersion>>>,
}

impl Docker {
    /// dockerd need not be running yet: requests fail until it is.
    pub fn new(socket: &str) -> Self {
        Self {
            socket: socket.to_owned(),
            version: Arc::default(),
        }
    }

    fn unreachable(&self, source: bollard::errors::Error) -> DockerError {
        DockerError::Unreachable {
            socket: self.socket.clone(),
            source,
        }
    }

    /// A bollard client per request: bollard refuses to make one while the socket is missing,
    /// and dockerd's socket comes and goes with dockerd. Making one opens no connection.
    fn connect(&self, version: &ClientVersion) -> Result<bollard::Docker> {
        bollard::Docker::connect_with_unix(&self.socket, REQUEST_TIMEOUT_SECS, version)
            .map_err(|source| self.unreachable(source))
    }

    /// A client speaking the API version agreed with this dockerd: bollard's newest, lowered to
    /// dockerd's own newest (1.41 for Docker 20.10, 1.45 for 26, 1.51 for 28), so that every
    /// Docker from 20.10 on takes it (Docker 29.0-29.2 refuse anything below 1.44).
    async fn client(&self) -> Result<bollard::Docker> {
        let known = *self.version.lock().expect("version lock");
        let version = match known {
            Some(version) => version,
            None => {
                // /version is answered at every API version, so asking it needs none.
                let negotiated = self
                    .connect(bollard::API_DEFAULT_VERSION)?
                    .negotiate_version()
                    .await
                    .map_err(|source| self.unreachable(source))?
                    .client_version();
                tracing::debug!(
                    api = format!("{}.{}", negotiated.major_version, negotiated.minor_version),
                    "Docker API version agreed"
                );
                *self.version.lock().expect("version lock") = Some(negotiated);
                negotiated
            }
        };
        let prefix = format!("/v{}.{}", version.major_version, version.minor_version);
        Ok(self
            .connect(&version)?
            .with_request_modifier(move |request| with_version(request, &prefix)))
    }

    /// Makes one request; a failed one forgets the agreed version.
    async fn request<T>(
        &self,
        make: impl AsyncFnOnce(bollard::Docker) -> std::result::Result<T, bollard::errors::Error>,
    ) -> Result<T> {
        let result = make(self.client().await?).await;
        if result.is_err() {
            self.forget_version();
        }
        Ok(result?)
    }

    fn forget_version(&self) {
        *self.version.lock().expect("version lock") = None;
    }

    pub async fn ping(&self) -> Result<()> {
        self.request(async |client| client.ping().await)
            .await
            .map(drop)
            .map_err(|error| match error {
                DockerError::Request(source) => self.unreachable(source),
                other => other,
            })
    }

    /// Docker's firewall backend, as `docker info` says (API 1.49 and later); None where it
    /// does not.
    pub async fn firewall_backend(&self) -> Result<Option<String>> {
        let info = self.request(async |client| client.info().await).await?;
        Ok(info.firewall_backend.and_then(|backend| backend.driver))
    }

    pub async fn version(&self) -> Result<String> {
        let version = self.request(async |client| client.version().await).await?;
        Ok(version.version.unwrap_or_default())
    }

    /// Every host port published by a running container, sorted.
    pub async fn published_ports(&self) -> Result<Vec<PublishedPort>> {
        let options = ListContainersOptionsBuilder::new().all(false).build();
        let containers = self
            .request(async |client| client.list_containers(Some(options)).await)
            .await?;
        let mut ports: Vec<PublishedPort> =
            containers.iter().flat_map(published_ports_of).collect();
        ports.sort();
        ports.dedup();
        Ok(ports)
    }

    pub async fn networks(&self) -> Result<Vec<Network>> {
        let networks = self
            .request(async |client| {
                client
                    .list_networks(Some(ListNetworksOptionsBuilder::new().build()))
                    .await
            })
            .await?;
        let mut networks: Vec<Network> = networks
            .into_iter()
            .map(|network| {
                let id = network.id.unwrap_or_default();
                let driver = network.driver.unwrap_or_default();
                let options = network.options.unwrap_or_default();
                let name = network.name.unwrap_or_default();
                let bridge = (driver == "bridge").then(|| bridge_name(&name, &id, &options));
                let subnets = network
                    .ipam
                    .and_then(|ipam| ipam.config)
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|config| config.subnet?.parse().ok())
                    .collect();
                Network {
                    id,
                    name,
                    driver,
                    bridge,
                    subnets,
                }
            })
            .collect();
        networks.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(networks)
    }

    /// Container and network events, for as long as the receiver is kept. When dockerd goes
    /// away (restart, crash) the stream sends `Disconnected`, reconnects with backoff and sends
    /// `Resynced` once it is back. It never gives up: Docker coming back is the normal case.
    pub fn watch(&self) -> mpsc::Receiver<DockerEvent> {
        let (sender, receiver) = mpsc::channel(256);
        let docker = self.clone();
        tokio::spawn(async move { docker.pump_events(sender).await });
        receiver
    }

    async fn pump_events(self, sender: mpsc::Sender<DockerEvent>) {
        // Asking a socket nobody serves costs microseconds; asking often means dockgate learns
        // that Docker is back (and binds its bridges again) within a tenth of a second.
        const FIRST_BACKOFF: Duration = Duration::from_millis(50);
        const MAX_BACKOFF: Duration = Duration::from_millis(100);
        let filters = HashMap::from([("type", vec!["container", "network"])]);
        let mut backoff = FIRST_BACKOFF;
        loop {
            let client = match self.client().await {
                Ok(client) if client.ping().await.is_ok() => client,
                _ => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            backoff = FIRST_BACKOFF;
            // bollard sends the request only when the stream is first polled; asking for events
            // since now, taken before announcing Resynced, leaves no gap for a consumer that
            // re-reads everything on Resynced.
            let since = unix_time_now();
            let options = EventsOptionsBuilder::new()
                .since(&since)
                .filters(&filters)
                .build();
            let mut events = client.events(Some(options));
            if sender.send(DockerEvent::Resynced).await.is_err() {
                return;
            }
            while let Some(event) = events.next().await {
                let Ok(event) = event else { break };
                let Some(event) = DockerEvent::from_message(event) else {
                    continue;
                };
                if sender.send(event).await.is_err() {
                    return;
                }
            }
            tracing::info!("Docker event stream ended (dockerd stopped or restarted)");
            self.forget_version();
            if sender.send(DockerEvent::Disconnected).await.is_err() {
                return;
            }
        }
    }
}

impl DockerEvent {
    fn from_message(message: EventMessage) -> Option<Self> {
        let action = message.action?;
        let id = message.actor.and_then(|actor| actor.id).unwrap_or_default();
        match message.typ? {
            EventMessageTypeEnum::CONTAINER => Some(DockerEvent::Container { action, id }),
            EventMessageTypeEnum::NETWORK => Some(DockerEvent::Network { action, id }),
            _ => None,
        }
    }
}

/// Seconds since the epoch with nanoseconds, as Docker's `since` filter takes them.
fn unix_time_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:09}", now.as_secs(), now.subsec_nanos())
}

/// Whether an interface has a name Docker gives its bridges itself ([`BRIDGE_PATTERNS`]).
pub fn is_docker_named(interface: &str) -> bool {
    BRIDGE_PATTERNS
        .iter()
        .any(|pattern| match pattern.strip_suffix('+') {
            Some(prefix) => interface.starts_with(prefix),
            None => interface == *pattern,
        })
}

/// Docker's rule for a bridge network's interface name (libnetwork's bridge driver): the
/// explicit option, docker0 for the default network, otherwise "br-" and the id's first 12.
fn bridge_name(name: &str, id: &str, options: &HashMap<String, String>) -> String {
    if let Some(explicit) = options.get(BRIDGE_NAME_OPTION).filter(|n| !n.is_empty()) {
        return explicit.clone();
    }
    if name == "bridge" {
        return "docker0".to_owned();
    }
    // By characters: an id is hex, but one that is not must not panic on a byte index.
    format!("br-{}", id.chars().take(12).collect::<String>())
}

fn published_ports_of(container: &ContainerSummary) -> Vec<PublishedPort> {
    let id = container.id.clone().unwrap_or_default();
    let name = container
        .names
        .as_ref()
        .and_then(|names| names.first())
        .map(|name| name.trim_start_matches('/').to_owned())
        .unwrap_or_else(|| id.chars().take(12).collect());
    let addresses = container_addresses(container);
    container
        .ports
        .iter()
        .flatten()
        .filter_map(|port| {
            // Only published ports have an address; an exposed but unpublished port has none.
            let bound: IpAddr = port.ip.as_deref()?.parse().ok()?;
            let protocol = match port.typ? {
                PortSummaryTypeEnum::TCP => Protocol::Tcp,
                PortSummaryTypeEnum::UDP => Protocol::Udp,
                PortSummaryTypeEnum::SCTP => Protocol::Sctp,
                PortSummaryTypeEnum::EMPTY => return None,
            };
            let container_ip = addresses
                .iter()
                .copied()
                .find(|address| address.is_ipv4() == bound.is_ipv4());
            let (host_ip, host_port, routed) = match port.public_port {
                Some(host_port) => (bound, host_port, false),
                // Published with no host port (Docker 28 says "0.0.0.0:0->80/tcp"): gateway
                // mode routed, reached at the container's address. Docker 29 leaves such ports
                // out of this list altogether (moby's container/view.go).
                None => (container_ip?, port.private_port, true),
            };
            Some(PublishedPort {
                container: name.clone(),
                container_id: id.clone(),
                host_ip,
                host_port,
                protocol,
                container_ip,
                container_port: port.private_port,
                routed,
            })
        })
        .collect()
}

/// The container's addresses, those on the default bridge first (that is where Docker's
/// port mapping for `docker run -p` points when the container is on it), then by network name.
fn container_addresses(container: &ContainerSummary) -> Vec<IpAddr> {
    let mut networks: Vec<_> = container
        .network_settings
        .as_ref()
        .and_then(|settings| settings.networks.as_ref())
        .into_iter()
        .flatten()
        .collect();
    networks.sort_by_key(|(name, _)| (name.as_str() != "bridge", name.as_str()));
    networks
        .into_iter()
        .flat_map(|(_, endpoint)| {
            [&endpoint.ip_address, &endpoint.global_ipv6_address]
                .into_iter()
                .filter_map(|address| address.as_deref()?.parse().ok())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_names_the_agreed_api_version_once() {
        let request = |uri: &str| {
            http::Request::builder()
                .uri(uri)
                .body(bollard::body_full(Default::default()))
                .unwrap()
        };
        let versioned = with_version(
            request("unix://2f72756e2f646f636b65722e736f636b/containers/json?all=false"),
            "/v1.41",
        );
        assert_eq!(
            versioned.uri().path_and_query().unwrap().as_str(),
            "/v1.41/containers/json?all=false"
        );
        let again = with_version(versioned, "/v1.41");
        assert_eq!(again.uri().path(), "/v1.41/containers/json");
        assert_eq!(
            with_version(request("unix://2f/_ping"), "/v1.53")
                .uri()
                .path(),
            "/v1.53/_ping"
        );
    }

    #[test]
    fn docker_times_with_an_offset_are_unix_seconds() {
        assert_eq!(unix_seconds("2026-12-06T08:59:18Z"), Some(1_796_547_558));
        assert_eq!(
            unix_seconds("2026-12-06T09:59:18+01:00"),
            Some(1_796_547_558)
        );
        assert_eq!(
            unix_seconds("2026-12-06T03:29:18-05:30"),
            Some(1_796_547_558)
        );
        assert_eq!(unix_seconds("yesterday"), None);
        assert_eq!(unix_seconds("2026-12-06T08:59:18+0100"), None);
    }

    #[test]
    fn bridge_names_follow_docker() {
        let none = HashMap::new();
        let id = "3f1e2d4c5b6a7988776655443322110000";
        assert_eq!(bridge_name("bridge", id, &none), "docker0");
        assert_eq!(bridge_name("appnet", id, &none), "br-3f1e2d4c5b6a");
        let named = HashMap::from([(BRIDGE_NAME_OPTION.to_owned(), "dg-custom".to_owned())]);
        assert_eq!(bridge_name("appnet", id, &named), "dg-custom");
        assert_eq!(bridge_name("appnet", "3f1e", &none), "br-3f1e");
        assert_eq!(
            bridge_name("appnet", "ééééééééééééé", &none),
            "br-éééééééééééé"
        );
    }

    #[test]
    fn docker_named_bridges_are_docker0_and_br_anything() {
        for name in ["docker0", "br-3f1e2d4c5b6a", "br-"] {
            assert!(is_docker_named(name), "{name}");
        }
        for name in ["docker1", "dg-custom", "eth0", "xbr-1"] {
            assert!(!is_docker_named(name), "{name}");
        }
    }

    #[test]
    fn ports_come_from_the_summary_with_the_matching_family_address() {
        let summary: ContainerSummary = serde_json::from_value(serde_json::json!({
            "Id": "abc123",
            "Names": ["/web"],
            "Ports": [
                {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
                {"IP": "::", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
                {"PrivatePort": 443, "Type": "tcp"}
            ],
            "NetworkSettings": {"Networks": {
                "appnet": {"IPAddress": "172.20.0.2", "GlobalIPv6Address": ""},
                "bridge": {"IPAddress": "172.17.0.2", "GlobalIPv6Address": "fd00:d0c::2"}
            }}
        }))
        .unwrap();
        let ports = published_ports_of(&summary);
        assert_eq!(
            ports.len(),
            2,
            "the unpublished 443 is not a published port"
        );
        assert_eq!(ports[0].container, "web");
        assert_eq!(ports[0].container_ip, Some("172.17.0.2".parse().unwrap()));
        assert_eq!(ports[1].host_ip, "::".parse::<IpAddr>().unwrap());
        assert_eq!(ports[1].container_ip, Some("fd00:d0c::2".parse().unwrap()));
        assert_eq!(ports[1].container_port, 80);
    }
}
