//! `dockgatectl metrics`: what dockgated reports, in Prometheus' text exposition format, for
//! node_exporter's textfile collector or PCP's openmetrics agent (docs/fleet.md). One read of
//! the API makes a [`Snapshot`]; [`render`] turns it into text without I/O, so that what a
//! fleet's dashboards and alerts rely on is pinned by snapshot tests; [`write_atomically`]
//! puts it where a collector reads it without ever showing a half-written file.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use zbus::{OwnedVariant, Variant};

use crate::api::{BUS_NAME, Dockgate1Proxy, OBJECT_PATH};

/// The states `dockgatectl ports` shows (ListPorts' states, with "open, audited" for a port
/// open only because `default = "audit"`): always rendered, 0 when no port is in one, so that
/// a query over a state finds a series on every host. Each port is in one state: their sum
/// is the ports published, and an alert on "open" is not set off by an audit.
const PORT_STATES: [&str; 5] = ["denied", "trusted-only", "exposed", "open", OPEN_AUDITED];
const OPEN_AUDITED: &str = "open, audited";
const ORIGINS: [&str; 2] = ["config", "runtime"];
/// The refused connections counted are those of the last five minutes (whole minutes: the
/// table keeps one count per minute). Not a counter: the table is bounded and forgets its
/// oldest minutes first, so a total would go down, which Prometheus takes for a restart and
/// a rate() for a burst. Five minutes is more than any scrape interval, so no attempt falls
/// between two readings.
pub const REFUSED_WINDOW_SECONDS: u64 = 300;

/// What one read of dockgated's API gave.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub version: String,
    /// The config's `default`: "deny", "allow", ...
    pub default: String,
    pub firewalld_connected: bool,
    pub docker_connected: bool,
    pub rule_count: u32,
    /// Unix microseconds; 0: never.
    pub last_reconcile_us: u64,
    /// None from a dockgated without the LastReconcileDuration property.
    pub last_reconcile_duration_us: Option<u64>,
    /// Each published port, as ListPorts gives it.
    pub ports: Vec<PortRow>,
    /// The origin of each exposure, as ListExposures gives it.
    pub exposure_origins: Vec<String>,
    /// ListRefused's entries of the last [`REFUSED_WINDOW_SECONDS`].
    pub refused: Vec<RefusedRow>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PortRow {
    pub host_port: u16,
    pub protocol: String,
    /// As `dockgatectl ports` shows it (one of [`PORT_STATES`], or a newer dockgated's).
    pub state: String,
}

/// Connections from one source to one port: only the port and protocol become labels. The
/// sources of a scan would make a series each, which costs a Prometheus server more than
/// the scan; `dockgatectl refused` names them.
#[derive(Debug, Clone, PartialEq)]
pub struct RefusedRow {
    pub port: u16,
    pub protocol: String,
    pub count: u64,
    /// Let in by `default = "audit"`; "deny" would refuse it.
    pub would_be: bool,
}

/// The text exposition of `snapshot`, read at `now_us` (unix microseconds).
pub fn render(snapshot: &Snapshot, now_us: u64) -> String {
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let flag = |on: bool| if on { 1.0 } else { 0.0 };
    let port_states: Vec<String> = snapshot
        .ports
        .iter()
        .map(|port| port.state.clone())
        .collect();
    gauge(
        "dockgate_up",
        "Whether dockgated answered on the system bus.",
        &[(String::new(), 1.0)],
    );
    gauge(
        "dockgate_info",
        "dockgated's version and the config's default for published ports nobody exposed.",
        &[(
            labels(&[
                ("version", &snapshot.version),
                ("default", &snapshot.default),
            ]),
            1.0,
        )],
    );
    gauge(
        "dockgate_firewalld_connected",
        "Whether dockgated reaches firewalld.",
        &[(String::new(), flag(snapshot.firewalld_connected))],
    );
    gauge(
        "dockgate_docker_connected",
        "Whether dockgated reaches Docker's API.",
        &[(String::new(), flag(snapshot.docker_connected))],
    );
    gauge(
        "dockgate_rules",
        "Firewall rules dockgate has in force.",
        &[(String::new(), f64::from(snapshot.rule_count))],
    );
    gauge(
        "dockgate_published_ports",
        "Ports Docker publishes, by who may reach them.",
        &counted(&PORT_STATES, &port_states, "state"),
    );
    gauge(
        "dockgate_exposures",
        "Exposures, from the config and made at run time.",
        &counted(&ORIGINS, &snapshot.exposure_origins, "origin"),
    );
    gauge(
        "dockgate_refused_connections",
        "Connections from outside that dockgate refused in the last 5 minutes (whole minutes), by host port.",
        &refused_by_port(snapshot, false),
    );
    gauge(
        "dockgate_would_be_refused_connections",
        "Connections from outside in the last 5 minutes (whole minutes) that default = \"audit\" let in and \"deny\" would refuse, by host port.",
        &refused_by_port(snapshot, true),
    );
    if snapshot.last_reconcile_us > 0 {
        gauge(
            "dockgate_last_reconcile_timestamp_seconds",
            "When dockgated last applied its policy, in unix seconds.",
            &[(String::new(), seconds(snapshot.last_reconcile_us))],
        );
        gauge(
            "dockgate_last_reconcile_age_seconds",
            "Seconds from the last time dockgated applied its policy to this reading.",
            &[(
                String::new(),
                seconds(now_us.saturating_sub(snapshot.last_reconcile_us)),
            )],
        );
    }
    if let Some(duration) = snapshot
        .last_reconcile_duration_us
        .filter(|_| snapshot.last_reconcile_us > 0)
    {
        gauge(
            "dockgate_last_reconcile_duration_seconds",
            "How long dockgated's last application of its policy took.",
            &[(String::new(), seconds(duration))],
        );
    }
    out
}

/// What a collector reads when dockgated does not answer: only that.
pub fn render_down() -> String {
    "# HELP dockgate_up Whether dockgated answered on the system bus.\n\
     # TYPE dockgate_up gauge\n\
     dockgate_up 0\n"
        .to_owned()
}

/// One sample per published port and protocol (0 when nothing was refused, so that a port's
/// series does not come and go), and per other port the window names. The audited count only
/// where audit is the default or the window has some: elsewhere it is always 0.
fn refused_by_port(snapshot: &Snapshot, would_be: bool) -> Vec<(String, f64)> {
    let mut counts: BTreeMap<(u16, &str), f64> = BTreeMap::new();
    if !would_be || snapshot.default == "audit" {
        for port in &snapshot.ports {
            counts.entry((port.host_port, &port.protocol)).or_default();
        }
    }
    for row in snapshot
        .refused
        .iter()
        .filter(|row| row.would_be == would_be)
    {
        *counts.entry((row.port, &row.protocol)).or_default() += row.count as f64;
    }
    counts
        .into_iter()
        .map(|((port, protocol), count)| {
            (
                labels(&[("port", &port.to_string()), ("protocol", protocol)]),
                count,
            )
        })
        .collect()
}

fn seconds(microseconds: u64) -> f64 {
    microseconds as f64 / 1e6
}

/// One sample per value of `label`: every one of `known`, then any other seen, sorted.
fn counted(known: &[&str], seen: &[String], label: &str) -> Vec<(String, f64)> {
    let mut counts: BTreeMap<&str, f64> = BTreeMap::new();
    for value in seen {
        *counts.entry(value.as_str()).or_default() += 1.0;
    }
    let mut samples: Vec<(String, f64)> = known
        .iter()
        .map(|value| {
            (
                labels(&[(label, value)]),
                counts.remove(value).unwrap_or(0.0),
            )
        })
        .collect();
    samples.extend(
        counts
            .into_iter()
            .map(|(value, count)| (labels(&[(label, value)]), count)),
    );
    samples
}

/// `{name="value",...}`, each value escaped as the exposition format asks.
fn labels(pairs: &[(&str, &str)]) -> String {
    let inner: Vec<String> = pairs
        .iter()
        .map(|(name, value)| {
            let escaped = value
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{name}=\"{escaped}\"")
        })
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// One read of the API at `now` (unix seconds): the properties in one GetAll, the ports, the
/// exposures and the refused connections.
pub async fn gather(bus: &zbus::Connection, now: u64) -> zbus::Result<Snapshot> {
    let api = Dockgate1Proxy::builder(bus)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await?;
    let properties = zbus::fdo::PropertiesProxy::builder(bus)
        .destination(BUS_NAME)
        .path(OBJECT_PATH)
        .build()
        .await?
        .get_all(zbus::names::InterfaceName::from_static_str_unchecked(
            BUS_NAME,
        ))
        .await?;
    let ports = api.list_ports().await?;
    let exposures = api.list_exposures().await?;
    let refused = api
        .list_refused(now.saturating_sub(REFUSED_WINDOW_SECONDS))
        .await?;
    let text = |name: &str| match properties.get(name).map(|value| &**value) {
        Some(Variant::Str(text)) => text.to_string(),
        _ => String::new(),
    };
    let flag = |name: &str| {
        matches!(
            properties.get(name).map(|value| &**value),
            Some(Variant::Bool(true))
        )
    };
    let number = |name: &str| match properties.get(name).map(|value| &**value) {
        Some(Variant::U32(n)) => Some(u64::from(*n)),
        Some(Variant::U64(n)) => Some(*n),
        _ => None,
    };
    Ok(Snapshot {
        version: text("Version"),
        default: text("Default"),
        firewalld_connected: flag("FirewalldConnected"),
        docker_connected: flag("DockerConnected"),
        rule_count: number("RuleCount").unwrap_or(0) as u32,
        last_reconcile_us: number("LastReconcile").unwrap_or(0),
        last_reconcile_duration_us: number("LastReconcileDuration"),
        ports: ports
            .iter()
            .map(|port| PortRow {
                host_port: entry_number(port, "host_port") as u16,
                protocol: entry_text(port, "protocol"),
                state: if entry_flag(port, "audited") {
                    OPEN_AUDITED.to_owned()
                } else {
                    entry_text(port, "state")
                },
            })
            .collect(),
        exposure_origins: exposures
            .iter()
            .map(|exposure| entry_text(exposure, "origin"))
            .collect(),
        refused: refused
            .iter()
            .map(|entry| RefusedRow {
                port: entry_number(entry, "port") as u16,
                protocol: entry_text(entry, "protocol"),
                count: entry_number(entry, "count"),
                would_be: entry_flag(entry, "would_be"),
            })
            .collect(),
    })
}

fn entry_flag(entry: &HashMap<String, OwnedVariant>, key: &str) -> bool {
    matches!(
        entry.get(key).map(|value| &**value),
        Some(Variant::Bool(true))
    )
}

fn entry_number(entry: &HashMap<String, OwnedVariant>, key: &str) -> u64 {
    match entry.get(key).map(|value| &**value) {
        Some(Variant::U16(n)) => u64::from(*n),
        Some(Variant::U32(n)) => u64::from(*n),
        Some(Variant::U64(n)) => *n,
        _ => 0,
    }
}

fn entry_text(entry: &HashMap<String, OwnedVariant>, key: &str) -> String {
    match entry.get(key).map(|value| &**value) {
        Some(Variant::Str(text)) => text.to_string(),
        _ => String::new(),
    }
}

/// Replaces `path` with `text` in one rename: a temporary file in the same directory (so that
/// the rename stays on one file system), flushed to disk first. A collector that reads
/// `*.prom` (node_exporter) never sees the temporary file, nor a half-written one.
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{}: not a file name", path.display()),
        )
    })?;
    let temporary = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(text.as_bytes())?;
        // Readable by the collector, whatever the umask of whoever runs this.
        file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

#[cfg(test)]
mod tests;
