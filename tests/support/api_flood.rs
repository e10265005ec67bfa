//! A hostile local user's flood of Expose calls, for tests/sandbox_failsafe.rs: N calls over
//! one connection to the system bus, C of them in flight at once, as a script looping on the
//! API would send them (without the cost of starting a process per call, which would measure
//! the machine's process start-up rather than dockgated). Prints how the calls ended:
//! "calls N ok K limit L refused R other O".
//!
//!     api_flood N C

use std::collections::HashMap;

use dockgate::api::Dockgate1Proxy;
use futures_util::StreamExt;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|arg| arg.parse().expect("api_flood N C"))
        .collect();
    let [calls, in_flight] = args[..] else {
        panic!("usage: api_flood N C");
    };
    let bus = zbus::Connection::system().await.expect("system bus");
    let api = Dockgate1Proxy::new(&bus).await.expect("dockgated's API");
    let outcomes: Vec<String> = futures_util::stream::iter(0..calls)
        .map(|n| {
            let api = api.clone();
            async move {
                let source = format!("10.99.2.{}", n % 250 + 1);
                match api.expose("8080/tcp", &[&source], 0, HashMap::new()).await {
                    Ok(_) => "ok".to_owned(),
                    Err(zbus::Error::MethodError(name, _, _)) => {
                        name.rsplit('.').next().unwrap_or_default().to_owned()
                    }
                    Err(other) => format!("other: {other}"),
                }
            }
        })
        .buffer_unordered(in_flight)
        .collect()
        .await;
    let count = |kind: &str| outcomes.iter().filter(|outcome| *outcome == kind).count();
    let known = ["ok", "LimitExceeded", "NotAuthorized"];
    let other = outcomes
        .iter()
        .filter(|outcome| !known.contains(&outcome.as_str()))
        .count();
    println!(
        "calls {} ok {} limit {} refused {} other {other}",
        outcomes.len(),
        count("ok"),
        count("LimitExceeded"),
        count("NotAuthorized")
    );
}
