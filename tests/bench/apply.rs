//! Benchmark (run inside the sandbox: `tests/bench/apply`): how long dockgate takes to apply
//! N exposures from nothing, and one more exposure at N = 1000, next to the naive way of
//! one `firewall-cmd --direct --add-rule` per rule on the same firewalld.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use dockgate::apply::Applier;
use dockgate::config::Config;
use dockgate::docker::Docker;
use dockgate::exposures;
use dockgate::firewalld::Firewalld;
use dockgate::plan;
use dockgate::policy::Policy;
use dockgate::reconcile;
use dockgate::state::StateDir;

/// A policy with `n` exposures, each of its own host port and source.
fn config(n: usize) -> Config {
    let mut text = String::from("trusted = [\"10.99.1.50\"]\n");
    for i in 0..n {
        text += &format!(
            "[[expose]]\nport = \"{}/tcp\"\nfrom = [\"10.200.{}.{}\"]\n",
            20000 + i,
            i / 250,
            i % 250 + 1
        );
    }
    Config::parse(&text, Path::new("bench.toml")).expect("benchmark config parses")
}

fn firewall_cmd(args: &[&str]) {
    let status = Command::new("firewall-cmd")
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("firewall-cmd runs");
    assert!(status.success(), "firewall-cmd {args:?} failed");
}

fn ms(duration: Duration) -> String {
    format!("{:.0} ms", duration.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let connection = zbus::Connection::system().await.expect("system bus");
    let firewalld = Firewalld::new(&connection).await.expect("firewalld");
    let state = std::env::temp_dir().join("dockgate-bench-state");
    let applier = Applier {
        firewall: firewalld.clone(),
        state: StateDir::new(&state),
    };
    let docker = Docker::new(dockgate::docker::DEFAULT_SOCKET);
    let version = firewalld.info().await.expect("firewalld info").version;
    let naive_max: usize = std::env::var("NAIVE_MAX")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(1000);
    println!("firewalld {version}");
    println!(
        "{:>6}  {:>12}  {:>8}  {:>14}  {:>8}",
        "N", "dockgate", "rules", "naive", "speed-up"
    );
    for n in [10, 100, 1000] {
        reconcile::remove(&applier).await.expect("clean start");
        let config = config(n);
        let started = Instant::now();
        let done = reconcile::once(&applier, &docker, &config)
            .await
            .expect("apply");
        let ours = started.elapsed();
        let rules = done.rules;
        let planned = plan::plan(
            &Policy::new(&config, &exposures::listed(&config, &[]), &[]),
            &[],
        );

        // The naive way: the same rules, one firewall-cmd each, runtime only.
        reconcile::remove(&applier).await.expect("clean start");
        let naive = if n <= naive_max {
            let chains = planned.chains.iter();
            let started = Instant::now();
            for chain in chains {
                firewall_cmd(&[
                    "--direct",
                    "--add-chain",
                    chain.family.as_str(),
                    &chain.table,
                    &chain.chain,
                ]);
            }
            for rule in &planned.rules {
                let priority = rule.priority.to_string();
                let mut args = vec![
                    "--direct",
                    "--add-rule",
                    rule.family.as_str(),
                    &rule.table,
                    &rule.chain,
                    &priority,
                ];
                args.extend(rule.args.iter().map(String::as_str));
                firewall_cmd(&args);
            }
            let naive = started.elapsed();
            firewall_cmd(&["--reload"]);
            Some(naive)
        } else {
            None
        };
        match naive {
            Some(naive) => println!(
                "{n:>6}  {:>12}  {rules:>8}  {:>14}  {:>7.1}x",
                ms(ours),
                ms(naive),
                naive.as_secs_f64() / ours.as_secs_f64()
            ),
            None => println!("{n:>6}  {:>12}  {rules:>8}  {:>14}", ms(ours), "(skipped)"),
        }
    }

    // One more exposure on top of 1000.
    reconcile::remove(&applier).await.expect("clean start");
    reconcile::once(&applier, &docker, &config(1000))
        .await
        .expect("apply 1000");
    let started = Instant::now();
    let done = reconcile::once(&applier, &docker, &config(1001))
        .await
        .expect("apply 1001");
    println!(
        "one exposure added at N = 1000: in the kernel after {}, reconcile done (permanent config \
         written) after {} ({} rules added, {} firewalld writes)",
        ms(done.outcome.in_kernel_after),
        ms(started.elapsed()),
        done.outcome.rules_added,
        done.outcome.writes
    );
    let started = Instant::now();
    let again = reconcile::once(&applier, &docker, &config(1001))
        .await
        .expect("re-apply");
    println!(
        "re-apply with nothing to change at N = 1001: {} ({} firewalld writes)",
        ms(started.elapsed()),
        again.outcome.writes
    );
    reconcile::remove(&applier).await.expect("clean up");
    let _ = std::fs::remove_dir_all(state);
}
