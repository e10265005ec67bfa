//! dockgatectl: the admin's command line for dockgate (SPEC §5).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dockgate::config::{self, Config};

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
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::CheckConfig { file } => check_config(&file),
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
