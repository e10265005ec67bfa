//! dockgate's state files on any bytes (a disk that tore a write, a hand edit): reading them
//! never panics, what is taken is what a caller could have sent and is written out the same,
//! what dockgated starts from plans without a panic, and the refused-connections table never
//! holds more than its bound nor panics on its counts.
#![no_main]

use dockgate::config::{Config, DefaultPolicy};
use dockgate::diff::Forwards;
use dockgate::exposures::{Request, RuntimeExposure, Stored};
use dockgate::plan::{self, DockerView, Inputs};
use dockgate::refused::{Saved, Table};
use dockgate::zones::{Bound, Originals};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Bytes that parse as `T` come out of a write and a read as the same value.
fn round_trips<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
    bytes: &[u8],
) -> Option<T> {
    let value: T = serde_json::from_slice(bytes).ok()?;
    let again = serde_json::to_vec(&value).expect("a state value serializes");
    assert_eq!(
        serde_json::from_slice::<T>(&again).expect("what was written reads"),
        value
    );
    Some(value)
}

fn plan_with(runtime: &[RuntimeExposure], docker: &DockerView) {
    let config = Config {
        default: DefaultPolicy::Deny,
        ..Config::default()
    };
    plan::desired(&Inputs {
        config: &config,
        runtime,
        docker,
        docker_up: true,
        rebuilding: false,
    });
}

fuzz_target!(|bytes: &[u8]| {
    if let Some(stored) = round_trips::<Stored>(bytes) {
        // Every stored exposure is one Expose would take today, unchanged.
        for exposure in stored.all() {
            let sources: Vec<String> = exposure.from.iter().map(ToString::to_string).collect();
            let checked = Request {
                port: &exposure.port.to_string(),
                sources: &sources,
                ttl_seconds: 0,
                container: exposure.container.as_deref(),
                comment: exposure.comment.as_deref(),
            }
            .check()
            .unwrap_or_else(|error| panic!("{exposure:?} was taken from the file: {error}"));
            assert_eq!(checked, exposure.exposure());
        }
        // dockgated plans the stored exposures as soon as it starts.
        plan_with(stored.all(), &DockerView::default());
    }
    if let Some(view) = round_trips::<DockerView>(bytes) {
        plan_with(&[], &view);
    }
    round_trips::<Forwards>(bytes);
    round_trips::<Originals>(bytes);
    round_trips::<Bound>(bytes);
    if let Some(saved) = round_trips::<Saved>(bytes) {
        for max_entries in [100, 10_000] {
            let table = Table::restore(saved.clone(), max_entries);
            assert!(
                table.len() <= max_entries as usize,
                "{} > {max_entries}",
                table.len()
            );
            table.list(0);
        }
    }
});
