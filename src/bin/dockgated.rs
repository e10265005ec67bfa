//! dockgated: keeps Docker-published ports behind dockgate's exposure policy.

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use dockgate::apply::Applier;
use dockgate::cli::dockgated::{Cli, Command};
use dockgate::config::Config;
use dockgate::daemon::Daemon;
use dockgate::docker::Docker;
use dockgate::exposures::Stored;
use dockgate::firewalld::Firewalld;
use dockgate::inspect::Report;
use dockgate::reconcile;
use dockgate::state::StateDir;

#[tokio::main]
async fn main() -> ExitCode {
    dockgate::logging::init();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Inspect { json }) => inspect(&cli, json).await,
        None if cli.remove => remove(&cli).await,
        None if cli.once => once(&cli).await,
        None => serve(&cli).await,
    }
}

async fn applier(cli: &Cli) -> Result<Applier<Firewalld>, String> {
    let connection = dockgate::firewalld::system_bus()
        .await
        .map_err(|error| format!("cannot connect to the system bus: {error}"))?;
    let firewall = Firewalld::new(&connection)
        .await
        .map_err(|error| error.to_string())?;
    Ok(Applier {
        firewall,
        state: StateDir::new(&cli.state_dir),
    })
}

async fn once(cli: &Cli) -> ExitCode {
    let config = match Config::load(Path::new(&cli.config)) {
        Ok(config) => config,
        Err(error) => return fail(error.to_string()),
    };
    let applier = match applier(cli).await {
        Ok(applier) => applier,
        Err(reason) => return fail(reason),
    };
    match reconcile::once(&applier, &Docker::new(&cli.docker_socket), &config).await {
        Ok(done) => {
            let outcome = &done.outcome;
            tracing::info!(
                trigger = "once",
                rules = done.rules,
                added = outcome.rules_added,
                removed = outcome.rules_removed,
                writes = outcome.writes,
                reloaded = outcome.reloaded,
                duration_ms = done.duration.as_millis() as u64,
                "policy applied"
            );
            println!(
                "dockgated: policy applied: {} rules planned, {} added, {} removed, {} firewalld writes, {} ms{}",
                done.rules,
                outcome.rules_added,
                outcome.rules_removed,
                outcome.writes,
                done.duration.as_millis(),
                if outcome.reloaded {
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
    let applier = match applier(cli).await {
        Ok(applier) => applier,
        Err(reason) => return fail(reason),
    };
    let store = match Stored::load(&applier.state) {
        Ok(store) => store,
        Err(error) => {
            return fail(format!(
                "{}: {error}; fix or remove it (the rules in firewalld stay as they are)",
                applier
                    .state
                    .path()
                    .join(dockgate::exposures::FILE)
                    .display()
            ));
        }
    };
    tracing::info!(config = %cli.config.display(), runtime_exposures = store.all().len(), "dockgated started");
    let bus = match dockgate::firewalld::system_bus().await {
        Ok(bus) => Some(bus),
        Err(error) => {
            tracing::error!(%error, "no system bus for the D-Bus API");
            None
        }
    };
    let docker = Docker::new(&cli.docker_socket);
    Daemon::new(applier, docker, cli.config.clone(), config, store, bus)
        .run()
        .await;
    ExitCode::SUCCESS
}

async fn remove(cli: &Cli) -> ExitCode {
    let applier = match applier(cli).await {
        Ok(applier) => applier,
        Err(reason) => return fail(reason),
    };
    match reconcile::remove(&applier).await {
        Ok(outcome) => {
            println!(
                "dockgated: removed {} rules; {} other changes undone",
                outcome.rules_removed,
                outcome.writes - outcome.rules_removed.min(outcome.writes)
            );
            ExitCode::SUCCESS
        }
        Err(error) => fail(error.to_string()),
    }
}

async fn inspect(cli: &Cli, json: bool) -> ExitCode {
    let applier = match applier(cli).await {
        Ok(applier) => applier,
        Err(reason) => return fail(reason),
    };
    let docker = Docker::new(&cli.docker_socket);
    let report = Report::gather(&applier, &docker, &cli.config).await;
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
