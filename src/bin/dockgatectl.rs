//! dockgatectl: the admin's command line for dockgate (SPEC §5).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dockgate::config::{self, Config};
use dockgate::firewalld::Firewalld;
use dockgate::state::{self, StateDir};
use dockgate::zones;

#[derive(Parser)]
#[command(
    version,
    about = "Control dockgate, the exposure policy for Docker-published ports"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a config file without asking the daemon; exit status 1 names the first mistake.
    CheckConfig {
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

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match Cli::parse().command {
        Command::CheckConfig { file } => check_config(&file),
        Command::DockerPrestart { state_dir } => docker_prestart(&state_dir).await,
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
    match zones::return_bridges(&firewalld, &StateDir::new(state_dir)).await {
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
