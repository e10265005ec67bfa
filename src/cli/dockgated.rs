//! `dockgated`'s command line.

use std::path::PathBuf;

use clap::{ArgGroup, Parser, Subcommand};

use crate::{config, docker, state};

#[derive(Parser)]
#[command(
    version,
    about = "Keeps Docker-published ports behind an explicit exposure policy"
)]
#[command(group(ArgGroup::new("mode").args(["once", "remove"])))]
pub struct Cli {
    /// Apply the policy once (rules, zone docker's settings, bridge binding) and exit.
    #[arg(long)]
    pub once: bool,

    /// Take out everything dockgate added and restore the zone settings it changed.
    #[arg(long)]
    pub remove: bool,

    /// The policy file.
    #[arg(long, default_value = config::DEFAULT_PATH, global = true)]
    pub config: PathBuf,

    /// Where dockgate keeps what it must remember (zone settings it found, bound bridges).
    #[arg(long, default_value = state::DEFAULT_DIR, global = true)]
    pub state_dir: PathBuf,

    /// Docker's API socket.
    #[arg(long, default_value = docker::DEFAULT_SOCKET, global = true)]
    pub docker_socket: String,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Report, read-only, what dockgate sees: firewalld, the zones of Docker's bridges, whether
    /// firewalld holds the rules that the config and the runtime exposures (--config,
    /// --state-dir) plan, who can reach each published port from outside, and the rules of
    /// others in DOCKER-USER.
    Inspect {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}
