//! dockgatectl: the admin's command line for dockgate (SPEC §5).

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use dockgate::apply::Applier;
use dockgate::cli::dockgatectl::{Cli, Command};
use dockgate::config::Config;
use dockgate::firewalld::{Firewall, Firewalld};
use dockgate::state::StateDir;
use dockgate::{metrics, reconcile};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file } => check_config(&file),
        Command::DockerPrestart { state_dir } => docker_prestart(&state_dir).await,
        Command::Metrics { output } => metrics(output.as_deref()).await,
        command => match client::run(command, cli.json).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(reason) => {
                eprintln!("dockgatectl: {reason}");
                ExitCode::FAILURE
            }
        },
    }
}

/// The commands that talk to dockgated over the system bus.
mod client {
    use std::collections::HashMap;

    use comfy_table::{Table, presets::NOTHING};
    use dockgate::api::Dockgate1Proxy;
    use zbus::{OwnedVariant, Variant};

    use dockgate::cli::dockgatectl::Command;

    /// One line: the D-Bus error's short name and its message, or what went wrong.
    pub fn reason(error: zbus::Error) -> String {
        match error {
            zbus::Error::MethodError(name, message, _) => {
                let short = name.rsplit('.').next().unwrap_or_default().to_owned();
                format!("{short}: {}", message.unwrap_or_default())
            }
            zbus::Error::FDO(fdo) => match *fdo {
                zbus::fdo::Error::ServiceUnknown(_) | zbus::fdo::Error::NameHasNoOwner(_) => {
                    "dockgated is not running (nobody owns org.dockgate.Dockgate1)".to_owned()
                }
                other => other.to_string(),
            },
            other => other.to_string(),
        }
    }

    /// A returned value as JSON: the API only sends strings, numbers, booleans and string lists.
    fn json(value: &OwnedVariant) -> serde_json::Value {
        let value: &Variant<'_> = value;
        match value {
            Variant::Str(text) => serde_json::Value::from(text.as_str()),
            Variant::Bool(flag) => serde_json::Value::from(*flag),
            Variant::U16(n) => serde_json::Value::from(*n),
            Variant::U32(n) => serde_json::Value::from(*n),
            Variant::U64(n) => serde_json::Value::from(*n),
            Variant::Array(items) => serde_json::Value::Array(
                items
                    .iter()
                    .map(|item| match item {
                        Variant::Str(text) => serde_json::Value::from(text.as_str()),
                        other => serde_json::Value::from(other.to_string()),
                    })
                    .collect(),
            ),
            other => serde_json::Value::from(other.to_string()),
        }
    }

    fn text(entry: &HashMap<String, OwnedVariant>, key: &str) -> String {
        match entry.get(key).map(json) {
            Some(serde_json::Value::String(text)) => text,
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|item| item.as_str().unwrap_or_default().to_owned())
                .collect::<Vec<_>>()
                .join(","),
            Some(other) => other.to_string(),
            None => String::new(),
        }
    }

    fn print_entries(
        entries: &[HashMap<String, OwnedVariant>],
        columns: &[(&str, &str)],
        as_json: bool,
    ) {
        if as_json {
            let list: Vec<serde_json::Map<String, serde_json::Value>> = entries
                .iter()
                .map(|entry| {
                    entry
                        .iter()
                        .map(|(key, value)| (key.clone(), json(value)))
                        .collect()
                })
                .collect();
            println!("{}", serde_json::Value::from(list));
            return;
        }
        let mut table = Table::new();
        table.load_style(NOTHING);
        table.set_header(columns.iter().map(|(title, _)| *title));
        for entry in entries {
            table.add_row(columns.iter().map(|(_, key)| text(entry, key)));
        }
        println!("{table}");
    }

    /// Replaces a column's value for the table (not for --json).
    fn set_text(entry: &mut HashMap<String, OwnedVariant>, key: &str, text: &str) {
        entry.insert(
            key.to_owned(),
            Variant::from(text).try_to_owned().expect("a string"),
        );
    }

    fn number(entry: &HashMap<String, OwnedVariant>, key: &str) -> u64 {
        entry
            .get(key)
            .map(json)
            .and_then(|value| value.as_u64())
            .unwrap_or(0)
    }

    /// A unix second as the local admin reads it: UTC, to the second.
    fn at(unix: u64) -> String {
        humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix),
        )
        .to_string()
        .replace('T', " ")
        .replace('Z', " UTC")
    }

    /// `--port 8080` or `--port 8080/tcp`.
    fn wanted_port(text: &str) -> Result<(u16, Option<&str>), String> {
        let (port, protocol) = match text.split_once('/') {
            Some((port, protocol)) => (port, Some(protocol)),
            None => (text, None),
        };
        let port = port
            .parse()
            .map_err(|_| format!("--port: \"{text}\" is not a port like 8080 or 8080/tcp"))?;
        if let Some(protocol) = protocol
            && !["tcp", "udp", "sctp"].contains(&protocol)
        {
            return Err(format!(
                "--port: unknown protocol \"{protocol}\" (tcp, udp, sctp)"
            ));
        }
        Ok((port, protocol))
    }

    fn expires(at: u64) -> String {
        if at == 0 {
            return "never".to_owned();
        }
        let now = dockgate::exposures::unix_now();
        if at <= now {
            "now".to_owned()
        } else {
            format!(
                "in {}",
                humantime::format_duration(std::time::Duration::from_secs(at - now))
            )
        }
    }

    pub async fn run(command: Command, as_json: bool) -> Result<(), String> {
        // Lives until the call is answered: polkit may ask it for a password meanwhile.
        let _agent = super::agent::TtyAgent::start();
        let bus = zbus::Connection::system()
            .await
            .map_err(|error| format!("cannot connect to the system bus: {error}"))?;
        let api = Dockgate1Proxy::builder(&bus)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .map_err(reason)?;
        match command {
            Command::Status => status(&bus, &api, as_json).await,
            Command::Ports => ports(&api, as_json).await,
            Command::List => list(&api, as_json).await,
            Command::Expose {
                port,
                sources,
                ttl,
                container,
                comment,
            } => {
                expose(
                    &api,
                    &port,
                    &sources,
                    ttl,
                    container.as_deref(),
                    comment.as_deref(),
                    as_json,
                )
                .await
            }
            Command::Unexpose { id } => api.unexpose(&id).await.map_err(reason),
            Command::Explain { source, port } => explain(&api, &source, &port, as_json).await,
            Command::Refused { since, port } => {
                refused(&api, since, port.as_deref(), as_json).await
            }
            Command::Suggest { since } => suggest(&api, since).await,
            Command::Reconcile => api.reconcile().await.map_err(reason),
            Command::Reload => api.reload_config().await.map_err(reason),
            Command::CheckConfig { .. }
            | Command::DockerPrestart { .. }
            | Command::Metrics { .. } => unreachable!(),
        }
    }

    /// `dockgatectl status`: connections, policy, rules, counts and what the caller may do.
    async fn status(
        bus: &zbus::Connection,
        api: &Dockgate1Proxy<'_>,
        as_json: bool,
    ) -> Result<(), String> {
        let exposures = api.list_exposures().await.map_err(reason)?;
        let ports = api.list_ports().await.map_err(reason)?;
        let permissions = api.permissions().await.map_err(reason)?;
        // All properties in one round trip: a busy bus (someone flooding the API)
        // delays each round trip, not the amount read.
        let properties = zbus::fdo::PropertiesProxy::builder(bus)
            .destination(dockgate::api::BUS_NAME)
            .path(dockgate::api::OBJECT_PATH)
            .build()
            .await
            .map_err(reason)?
            .get_all(zbus::names::InterfaceName::from_static_str_unchecked(
                dockgate::api::BUS_NAME,
            ))
            .await
            .map_err(|error| reason(error.into()))?;
        let property = |name: &str| properties.get(name).map(json).unwrap_or_default();
        let last = property("LastReconcile").as_u64().unwrap_or(0);
        let status = serde_json::json!({
            "version": property("Version"),
            "firewalld_connected": property("FirewalldConnected"),
            "docker_connected": property("DockerConnected"),
            "default": property("Default"),
            "verdict": property("Verdict"),
            "on_revoke": property("OnRevoke"),
            "strict_forward_ports": property("StrictForwardPorts"),
            "permissions": permissions,
            "bridge_zone": property("BridgeZone"),
            "rule_count": property("RuleCount"),
            "last_reconcile": last,
            "exposures": exposures.len(),
            "published_ports": ports.len(),
        });
        if as_json {
            println!("{status}");
            return Ok(());
        }
        let yes_no = |key: &str| {
            if status[key] == true {
                "connected"
            } else {
                "NOT CONNECTED"
            }
        };
        let ago = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|now| now.as_secs().saturating_sub(last / 1_000_000))
            .unwrap_or(0);
        println!(
            "dockgated {}",
            status["version"].as_str().unwrap_or_default()
        );
        println!("  firewalld:  {}", yes_no("firewalld_connected"));
        println!("  Docker:     {}", yes_no("docker_connected"));
        println!(
            "  policy:     default {}, verdict {}, {} rules in force, bridges in zone {}",
            status["default"].as_str().unwrap_or_default(),
            status["verdict"].as_str().unwrap_or_default(),
            status["rule_count"],
            status["bridge_zone"].as_str().unwrap_or_default()
        );
        if status["strict_forward_ports"] == true {
            println!(
                "  firewalld:  StrictForwardPorts=yes: dockgate keeps a forward-port for each port it lets someone reach"
            );
        }
        if status["on_revoke"] == "cut" {
            println!("  revoking:   ends the connections an exposure admitted (on_revoke = cut)");
        }
        if last == 0 {
            println!("  applied:    never");
        } else {
            println!(
                "  applied:    {} ago",
                humantime::format_duration(std::time::Duration::from_secs(ago))
            );
        }
        let open = ports
            .iter()
            .filter(|port| text(port, "state") == "open")
            .count();
        let audited = ports
            .iter()
            .filter(|port| text(port, "audited") == "true")
            .count();
        print!(
            "  ports:      {} published, {open} open to any source",
            ports.len()
        );
        if audited > 0 {
            print!(
                " ({audited} of them audited: default = \"deny\" would close them to whom no grant names)"
            );
        }
        println!();
        println!("  exposures:  {}", exposures.len());
        let answer = |action: &str| match permissions.get(action).map(String::as_str) {
            Some("yes") => "yes",
            Some("auth") => "with a password",
            _ => "no",
        };
        println!(
            "  you may:    read {}, expose {}, administer {}",
            answer("read"),
            answer("expose"),
            answer("admin")
        );
        Ok(())
    }

    /// `dockgatectl ports`: every published port and who may reach it.
    async fn ports(api: &Dockgate1Proxy<'_>, as_json: bool) -> Result<(), String> {
        let mut ports = api.list_ports().await.map_err(reason)?;
        if !as_json {
            for entry in &mut ports {
                if text(entry, "loopback_only") == "true" {
                    set_text(entry, "state", "loopback only");
                } else if text(entry, "audited") == "true" {
                    set_text(entry, "state", "open, audited");
                }
            }
        }
        print_entries(
            &ports,
            &[
                ("CONTAINER", "container"),
                ("HOST IP", "host_ip"),
                ("PORT", "host_port"),
                ("PROTO", "protocol"),
                ("TO", "container_port"),
                ("STATE", "state"),
                ("SOURCES", "sources"),
                ("JUDGED BY", "judged_by"),
            ],
            as_json,
        );
        Ok(())
    }

    /// `dockgatectl list`: every exposure, config and runtime.
    async fn list(api: &Dockgate1Proxy<'_>, as_json: bool) -> Result<(), String> {
        let mut exposures = api.list_exposures().await.map_err(reason)?;
        if !as_json {
            for entry in &mut exposures {
                let at = match entry.get("expires_at").map(json) {
                    Some(serde_json::Value::Number(n)) => n.as_u64().unwrap_or(0),
                    _ => 0,
                };
                set_text(entry, "expires", &expires(at));
            }
        }
        print_entries(
            &exposures,
            &[
                ("ID", "id"),
                ("PORT", "port"),
                ("CONTAINER", "container"),
                ("SOURCES", "sources"),
                ("EXPIRES", "expires"),
                ("OWNER", "owner"),
                ("ACTIVE", "active"),
                ("COMMENT", "comment"),
            ],
            as_json,
        );
        Ok(())
    }

    /// `dockgatectl expose`: prints the new exposure's id.
    async fn expose(
        api: &Dockgate1Proxy<'_>,
        port: &str,
        sources: &[String],
        ttl: Option<std::time::Duration>,
        container: Option<&str>,
        comment: Option<&str>,
        as_json: bool,
    ) -> Result<(), String> {
        let sources: Vec<&str> = sources.iter().map(String::as_str).collect();
        let mut options = HashMap::new();
        if let Some(container) = container {
            options.insert("container", Variant::from(container));
        }
        if let Some(comment) = comment {
            options.insert("comment", Variant::from(comment));
        }
        let ttl = ttl.map_or(0, |ttl| ttl.as_secs().max(1));
        let id = api
            .expose(port, &sources, ttl, options)
            .await
            .map_err(reason)?;
        if as_json {
            println!("{}", serde_json::json!({ "id": id }));
        } else {
            println!("{id}");
        }
        Ok(())
    }

    /// `dockgatectl explain`: would a new connection get through, and why.
    async fn explain(
        api: &Dockgate1Proxy<'_>,
        source: &str,
        port: &str,
        as_json: bool,
    ) -> Result<(), String> {
        let (allowed, why) = api.explain(source, port).await.map_err(reason)?;
        if as_json {
            println!(
                "{}",
                serde_json::json!({ "allowed": allowed, "reason": why })
            );
        } else {
            println!("{}: {why}", if allowed { "allowed" } else { "denied" });
        }
        Ok(())
    }

    /// `dockgatectl refused`: who was refused (or would be, auditing), per host port and source.
    async fn refused(
        api: &Dockgate1Proxy<'_>,
        since: std::time::Duration,
        port: Option<&str>,
        as_json: bool,
    ) -> Result<(), String> {
        let since = dockgate::exposures::unix_now().saturating_sub(since.as_secs());
        let wanted = port.map(wanted_port).transpose()?;
        let mut entries = api.list_refused(since).await.map_err(reason)?;
        entries.retain(|entry| {
            wanted.is_none_or(|(port, protocol)| {
                text(entry, "port") == port.to_string()
                    && protocol.is_none_or(|protocol| text(entry, "protocol") == protocol)
            })
        });
        if as_json {
            print_entries(&entries, &[], true);
            return Ok(());
        }
        if entries.is_empty() {
            println!(
                "Nothing refused since {} (dockgate records refusals with default = \"deny\" or \"audit\").",
                at(since)
            );
            return Ok(());
        }
        let connections: u64 = entries.iter().map(|entry| number(entry, "count")).sum();
        for entry in &mut entries {
            let port = format!("{}/{}", text(entry, "port"), text(entry, "protocol"));
            set_text(entry, "port", &port);
            let first = at(number(entry, "first_seen"));
            let last = at(number(entry, "last_seen"));
            set_text(entry, "first_seen", &first);
            set_text(entry, "last_seen", &last);
            let what = if text(entry, "would_be") == "true" {
                "would refuse (audit)"
            } else {
                "refused"
            };
            set_text(entry, "would_be", what);
        }
        println!(
            "{} since {}:",
            crate::count(connections as usize, "connection", "connections"),
            at(since)
        );
        print_entries(
            &entries,
            &[
                ("PORT", "port"),
                ("SOURCE", "source"),
                ("COUNT", "count"),
                ("FIRST SEEN", "first_seen"),
                ("LAST SEEN", "last_seen"),
                ("", "would_be"),
            ],
            false,
        );
        Ok(())
    }

    /// `dockgatectl suggest`: the exposures that would admit exactly what was recorded.
    async fn suggest(api: &Dockgate1Proxy<'_>, since: std::time::Duration) -> Result<(), String> {
        let now = dockgate::exposures::unix_now();
        let since = now.saturating_sub(since.as_secs());
        let entries = api.list_refused(since).await.map_err(reason)?;
        let entries: Vec<dockgate::refused::Entry> = entries
            .iter()
            .filter_map(|entry| {
                let protocol = match text(entry, "protocol").as_str() {
                    "tcp" => dockgate::docker::Protocol::Tcp,
                    "udp" => dockgate::docker::Protocol::Udp,
                    "sctp" => dockgate::docker::Protocol::Sctp,
                    _ => return None,
                };
                Some(dockgate::refused::Entry {
                    port: text(entry, "port").parse().ok()?,
                    protocol,
                    source: text(entry, "source").parse().ok()?,
                    count: number(entry, "count"),
                    first_seen: number(entry, "first_seen"),
                    last_seen: number(entry, "last_seen"),
                    would_be: text(entry, "would_be") == "true",
                })
            })
            .collect();
        print!("{}", dockgate::suggest::render(&entries, since, now));
        Ok(())
    }
}

/// polkit's text agent, so that a call needing a password (auth_admin, auth_self) asks for it
/// in the terminal instead of being refused. Started much as systemctl starts it: pkttyagent
/// registers for its parent process and closes `--notify-fd` once it is registered; our calls
/// set ALLOW_INTERACTIVE_AUTH, and polkitd finds the agent through the caller's process.
/// Unlike systemctl, not `--fallback`: polkitd ignores a fallback agent when the caller has no
/// logind session (a console without pam_systemd, a container, the test sandbox), and the
/// terminal the command runs in is where its user looks. No crate starts pkttyagent, so this is
/// by hand.
mod agent {
    use std::io::{IsTerminal, Read};
    use std::os::fd::AsRawFd;
    use std::process::{Child, Command, Stdio};

    use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::{Pid, geteuid, pipe2};

    pub struct TtyAgent(Child);

    impl TtyAgent {
        /// None when nobody could answer a prompt (stdin is not a terminal), when root calls
        /// (uid 0 needs no polkit), or when pkttyagent cannot be started: the call then goes
        /// ahead and polkit answers without asking.
        pub fn start() -> Option<TtyAgent> {
            if geteuid().is_root() || !std::io::stdin().is_terminal() {
                return None;
            }
            let (ready, registered) = pipe2(OFlag::O_CLOEXEC).ok()?;
            // Only the child's copy of the write end may stay open across exec.
            fcntl(&registered, FcntlArg::F_SETFD(FdFlag::empty())).ok()?;
            // Where polkit puts it on RHEL, Fedora and Debian; not looked up in PATH.
            let child = Command::new("/usr/bin/pkttyagent")
                .args(["--notify-fd", &registered.as_raw_fd().to_string()])
                .stdin(Stdio::inherit())
                .stdout(Stdio::inherit())
                .stderr(Stdio::inherit())
                .spawn()
                .ok()?;
            drop(registered);
            // End of file once pkttyagent registered (or gave up and exited).
            let _ = std::fs::File::from(ready).read(&mut [0u8; 1]);
            Some(TtyAgent(child))
        }
    }

    impl Drop for TtyAgent {
        fn drop(&mut self) {
            // SIGTERM lets it unregister from polkitd.
            let _ = kill(Pid::from_raw(self.0.id() as i32), Signal::SIGTERM);
            let _ = self.0.wait();
        }
    }
}

/// The exposition goes out (to the file, or standard output) even when dockgated does not
/// answer: `dockgate_up 0` is what an alert on a fleet looks for.
async fn metrics(output: Option<&Path>) -> ExitCode {
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |now| now.as_micros() as u64);
    let snapshot = match zbus::Connection::system().await {
        Ok(bus) => metrics::gather(&bus, now_us / 1_000_000)
            .await
            .map_err(client::reason),
        Err(error) => Err(format!("cannot connect to the system bus: {error}")),
    };
    let text = match &snapshot {
        Ok(snapshot) => metrics::render(snapshot, now_us),
        Err(_) => metrics::render_down(),
    };
    let written = match output {
        Some(path) => metrics::write_atomically(path, &text)
            .map_err(|error| format!("cannot write {}: {error}", path.display())),
        None => {
            print!("{text}");
            Ok(())
        }
    };
    match snapshot.and(written) {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => {
            eprintln!("dockgatectl: {reason}");
            ExitCode::FAILURE
        }
    }
}

async fn docker_prestart(state_dir: &Path) -> ExitCode {
    let firewalld = match dockgate::firewalld::system_bus().await {
        Ok(connection) => Firewalld::new(&connection).await,
        Err(error) => {
            eprintln!("dockgatectl: cannot connect to the system bus: {error}");
            return ExitCode::FAILURE;
        }
    };
    let firewalld = match firewalld {
        Ok(firewalld) => firewalld,
        Err(error) => {
            eprintln!("dockgatectl: {error}");
            return ExitCode::FAILURE;
        }
    };
    // Without firewalld there is no zone for Docker to conflict with.
    if !firewalld.is_running().await.unwrap_or(false) {
        println!("dockgatectl: firewalld is not running; nothing to return");
        return ExitCode::SUCCESS;
    }
    let applier = Applier {
        firewall: firewalld,
        state: StateDir::new(state_dir),
    };
    match reconcile::return_bridges(&applier).await {
        Ok(returned) if returned.is_empty() => ExitCode::SUCCESS,
        Ok(returned) => {
            println!(
                "dockgatectl: returned to zone docker: {}",
                returned.join(" ")
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("dockgatectl: {error}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(file: &Path) -> ExitCode {
    match Config::load(file) {
        Ok(config) => {
            println!(
                "{}: OK ({}, {}, default {}, verdict {})",
                file.display(),
                count(config.expose.len(), "exposure", "exposures"),
                count(config.trusted.len(), "trusted source", "trusted sources"),
                config.default,
                config.verdict,
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("dockgatectl: {err}");
            ExitCode::FAILURE
        }
    }
}

fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
