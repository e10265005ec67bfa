//! dockgated: keeps Docker-published ports behind dockgate's exposure policy.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{ArgGroup, Parser, Subcommand};
use dockgate::config::{self, Config};
use dockgate::daemon::Daemon;
use dockgate::docker::{self, Docker};
use dockgate::exposures::Store;
use dockgate::firewalld::Firewalld;
use dockgate::inspect::Report;
use dockgate::reconcile::Enforcer;
use dockgate::state::{self, StateDir};

#[derive(Parser)]
#[command(
    version,
    about = "Keeps Docker-published ports behind an explicit exposure policy"
)]
#[command(group(ArgGroup::new("mode").args(["once", "remove"])))]
struct Cli {
    /// Apply the policy once (rules, zone docker's settings, bridge binding) and exit.
    #[arg(long)]
    once: bool,

    /// Take out everything dockgate added and restore the zone settings it changed.
    #[arg(long)]
    remove: bool,

    /// The policy file.
    #[arg(long, default_value = config::DEFAULT_PATH, global = true)]
    config: PathBuf,

    /// Where dockgate keeps what it must remember (zone settings it found, bound bridges).
    #[arg(long, default_value = state::DEFAULT_DIR, global = true)]
    state_dir: PathBuf,

    /// Docker's API socket.
    #[arg(long, default_value = docker::DEFAULT_SOCKET, global = true)]
    docker_socket: String,

    #[command(subcommand)]
    command: Option<Command>,
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
        Some(Command::Inspect { json }) => inspect(&cli.docker_socket, json).await,
        None if cli.remove => remove(&cli).await,
        None if cli.once => once(&cli).await,
        None => serve(&cli).await,
    }
}

async fn enforcer(cli: &Cli) -> Result<Enforcer, String> {
    let connection = dockgate::firewalld::system_bus()
        .await
        .map_err(|error| format!("cannot connect to the system bus: {error}"))?;
    let firewalld = Firewalld::new(&connection)
        .await
        .map_err(|error| error.to_string())?;
    Ok(Enforcer {
        firewalld,
        docker: Docker::new(&cli.docker_socket),
        state: StateDir::new(&cli.state_dir),
    })
}

async fn once(cli: &Cli) -> ExitCode {
    let config = match Config::load(Path::new(&cli.config)) {
        Ok(config) => config,
        Err(error) => return fail(error.to_string()),
    };
    let enforcer = match enforcer(cli).await {
        Ok(enforcer) => enforcer,
        Err(reason) => return fail(reason),
    };
    match enforcer.reconcile(&config).await {
        Ok(done) => {
            tracing::info!(
                trigger = "once",
                rules = done.plan.rules.len(),
                added = done.rules.rules_added,
                removed = done.rules.rules_removed,
                writes = done.writes(),
                reloaded = done.reloaded,
                duration_ms = done.duration.as_millis() as u64,
                "policy applied"
            );
            println!(
                "dockgated: policy applied: {} rules planned, {} added, {} removed, {} firewalld writes, {} ms{}",
                done.plan.rules.len(),
                done.rules.rules_added,
                done.rules.rules_removed,
                done.writes(),
                done.duration.as_millis(),
                if done.reloaded {
                    ", firewalld reloaded"
                } else {
                    ""
                }
            );
            ExitCode::SUCCESS
        }
        Err(error) => fail(error.to_string()),
    }
}

/// The service: keeps the policy applied until SIGTERM, through Docker and firewalld
/// restarts and reloads.
async fn serve(cli: &Cli) -> ExitCode {
    let config = match Config::load(Path::new(&cli.config)) {
        Ok(config) => config,
        Err(error) => return fail(error.to_string()),
    };
    let enforcer = match enforcer(cli).await {
        Ok(enforcer) => enforcer,
        Err(reason) => return fail(reason),
    };
    let exposures = match Store::load(enforcer.state.clone()) {
        Ok(exposures) => exposures,
        Err(error) => {
            return fail(format!(
                "{}: {error}; fix or remove it (the rules in firewalld stay as they are)",
                enforcer
                    .state
                    .path()
                    .join(dockgate::exposures::FILE)
                    .display()
            ));
        }
    };
    tracing::info!(config = %cli.config.display(), runtime_exposures = exposures.all().len(), "dockgated started");
    let bus = match dockgate::firewalld::system_bus().await {
        Ok(bus) => Some(bus),
        Err(error) => {
            tracing::error!(%error, "no system bus for the D-Bus API");
            None
        }
    };
    Daemon::new(enforcer, cli.config.clone(), config, exposures, bus)
        .run()
        .await;
    ExitCode::SUCCESS
}

async fn remove(cli: &Cli) -> ExitCode {
    let enforcer = match enforcer(cli).await {
        Ok(enforcer) => enforcer,
        Err(reason) => return fail(reason),
    };
    match enforcer.remove().await {
        Ok((rules, zone)) => {
            println!(
                "dockgated: removed {} rules; {} zone changes undone",
                rules.rules_removed, zone.writes
            );
            ExitCode::SUCCESS
        }
        Err(error) => fail(error.to_string()),
    }
}

async fn inspect(docker_socket: &str, json: bool) -> ExitCode {
    let connection = match dockgate::firewalld::system_bus().await {
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
