//! `dockgatectl`'s command line (SPEC §5).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::{config, state};

#[derive(Parser)]
#[command(
    version,
    about = "Control dockgate, the exposure policy for Docker-published ports"
)]
pub struct Cli {
    /// Print JSON for scripts instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// The daemon at a glance: connections, policy, rules, exposures.
    Status,
    /// Every port Docker publishes and who may reach it.
    Ports,
    /// Every exposure, from the config and at run time.
    List,
    /// Let sources reach a published host port, e.g. `expose 8080/tcp --from 203.0.113.7 --for 1h`.
    Expose {
        /// Host port and protocol: 8080/tcp, 8000-8010/udp.
        port: String,
        /// Sources: addresses, CIDRs, ranges a-b, or any.
        #[arg(long = "from", required = true, num_args = 1..)]
        sources: Vec<String>,
        /// How long (90s, 15m, 1h, 2d); until removed when absent.
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        ttl: Option<std::time::Duration>,
        /// Only while this container publishes the port.
        #[arg(long)]
        container: Option<String>,
        /// A note kept with the exposure and shown by `list`, e.g. who asked for it and why.
        #[arg(long)]
        comment: Option<String>,
    },
    /// Remove a runtime exposure by id.
    Unexpose {
        /// The exposure's id as `list` shows it, e.g. runtime-3.
        id: String,
    },
    /// Would a new connection from SOURCE to PORT (8080/tcp) get through, and why?
    Explain {
        /// An IPv4 or IPv6 address.
        source: String,
        /// Host port and protocol: 8080/tcp.
        port: String,
    },
    /// Connections from outside that dockgate refused (with default = "audit": would refuse),
    /// per port and source.
    Refused {
        /// How far back: 90s, 15m, 1h, 2d.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        since: std::time::Duration,
        /// Only this host port: 8080 or 8080/tcp.
        #[arg(long)]
        port: Option<String>,
    },
    /// The `[[expose]]` entries (and, for sources that reached many ports, a `trusted` line)
    /// that would admit exactly what was recorded, as TOML to review and paste into the config.
    Suggest {
        /// How far back: 1h, 24h, 7d.
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        since: std::time::Duration,
    },
    /// Re-read firewalld and Docker and re-apply.
    Reconcile,
    /// Re-read the config file; a bad one is refused and the old one stays.
    Reload,
    /// What dockgated reports, in Prometheus' text format: published ports by state, exposures
    /// by origin, rules in force, connections, the last reconcile's time and duration, and the
    /// connections refused (or, with default = "audit", that "deny" would refuse) in the last 5
    /// minutes per host port. When dockgated does not answer: `dockgate_up 0`, and exit status
    /// 1. systemd's dockgate-metrics.timer writes them for node_exporter (not enabled).
    Metrics {
        /// Write to this file instead of standard output, replacing it in one rename (for
        /// node_exporter's textfile collector: a name ending in .prom in its directory).
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Check a config file without asking the daemon; exit status 1 names the first mistake.
    CheckConfig {
        /// The config file to check.
        #[arg(default_value = config::DEFAULT_PATH)]
        file: PathBuf,
    },
    /// Return the bridges dockgate bound to another zone to zone docker, so that Docker can
    /// start (it refuses to when a bridge of its own is bound elsewhere). Run by docker.service
    /// before dockerd; talks to firewalld directly, so it works while dockgated is down.
    DockerPrestart {
        /// Where dockgated records the bridges it bound.
        #[arg(long, default_value = state::DEFAULT_DIR)]
        state_dir: PathBuf,
    },
}
