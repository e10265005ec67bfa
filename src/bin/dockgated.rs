//! dockgated: keeps Docker-published ports behind dockgate's exposure policy.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dockgate::docker::{self, Docker};
use dockgate::firewalld::Firewalld;
use dockgate::inspect::Report;

#[derive(Parser)]
#[command(
    version,
    about = "Keeps Docker-published ports behind an explicit exposure policy"
)]
struct Cli {
    /// Docker's API socket.
    #[arg(long, default_value = docker::DEFAULT_SOCKET, global = true)]
    docker_socket: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Report, read-only, what dockgate sees: firewalld, the zones of Docker's bridges, the
    /// published ports and whether each is reachable from outside, and DOCKER-USER's rules.
    Inspect {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    dockgate::logging::init();
    let cli = Cli::parse();
    match cli.command {
        Command::Inspect { json } => inspect(&cli.docker_socket, json).await,
    }
}

async fn inspect(docker_socket: &str, json: bool) -> ExitCode {
    let connection = match zbus::Connection::system().await {
        Ok(connection) => connection,
        Err(error) => return fail(format!("cannot connect to the system bus: {error}")),
    };
    let firewalld = match Firewalld::new(&connection).await {
        Ok(firewalld) => firewalld,
        Err(error) => return fail(error.to_string()),
    };
    let docker = Docker::new(docker_socket);
    let report = Report::gather(&firewalld, &docker).await;
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(error) => return fail(format!("cannot encode the report: {error}")),
        }
    } else {
        print!("{}", report.render_text());
    }
    if report.is_complete() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn fail(reason: String) -> ExitCode {
    eprintln!("dockgated: {reason}");
    ExitCode::FAILURE
}
