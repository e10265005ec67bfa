//! Latency of Expose and Unexpose through the D-Bus API (issue 5): from the call until it
//! returns, which dockgated does once the rule is in the kernel (or out of it). Needs a running
//! dockgated; `tests/bench/expose` starts one in the sandbox.
//!
//! Two ways, 200 calls each: back to back (a script adding 200 ports: each call also waits for
//! the previous one's permanent-config rewrite, which dockgated does after answering), and one
//! at a time, 300 ms apart (a person or a GUI: each call finds dockgated idle).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use dockgate::api::Dockgate1Proxy;

const CALLS: u16 = 200;
const APART: Duration = Duration::from_millis(300);

fn summary(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |quantile: f64| samples[((samples.len() - 1) as f64 * quantile).round() as usize];
    println!(
        "{name:<10} {} calls: median {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        samples.len(),
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        samples.last().unwrap().as_secs_f64() * 1e3
    );
}

/// CALLS Exposes of ports from `first_port` on, then as many Unexposes, `gap` between calls.
async fn run(api: &Dockgate1Proxy<'_>, first_port: u16, gap: Duration) {
    let mut exposed = Vec::new();
    let mut ids = Vec::new();
    for n in 0..CALLS {
        tokio::time::sleep(gap).await;
        let port = format!("{}/tcp", first_port + n);
        let started = Instant::now();
        let id = api
            .expose(&port, &["203.0.113.9"], 0, HashMap::new())
            .await
            .expect("Expose");
        exposed.push(started.elapsed());
        ids.push(id);
    }
    let mut unexposed = Vec::new();
    for id in &ids {
        tokio::time::sleep(gap).await;
        let started = Instant::now();
        api.unexpose(id).await.expect("Unexpose");
        unexposed.push(started.elapsed());
    }
    summary("Expose", exposed);
    summary("Unexpose", unexposed);
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let bus = zbus::Connection::system().await.expect("system bus");
    let api = Dockgate1Proxy::new(&bus).await.expect("dockgated's API");
    println!("back to back:");
    run(&api, 30000, Duration::ZERO).await;
    println!("one at a time, {} ms apart:", APART.as_millis());
    run(&api, 31000, APART).await;
}
