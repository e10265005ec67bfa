//! Latency of Expose and Unexpose through the D-Bus API (issue 5): from the call until it
//! returns, which dockgated does once the rule is in the kernel (or out of it). Needs a running
//! dockgated; `tests/bench/expose` starts one in the sandbox.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use dockgate::api::Dockgate1Proxy;

const CALLS: u16 = 200;

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

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let bus = zbus::Connection::system().await.expect("system bus");
    let api = Dockgate1Proxy::new(&bus).await.expect("dockgated's API");
    let mut exposed = Vec::new();
    let mut ids = Vec::new();
    for n in 0..CALLS {
        let port = format!("{}/tcp", 30000 + n);
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
        let started = Instant::now();
        api.unexpose(id).await.expect("Unexpose");
        unexposed.push(started.elapsed());
    }
    summary("Expose", exposed);
    summary("Unexpose", unexposed);
}
