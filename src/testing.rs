//! Fixtures of the unit tests: configs, published ports, and generated policies for the
//! property tests of the plan and the applier.

use std::path::Path;

use proptest::prelude::*;

use crate::config::Config;
use crate::docker::{Protocol, PublishedPort};

/// The wall clock of the unit tests (Unix seconds).
pub const NOW: u64 = 1_800_000_000;

pub fn config(text: &str) -> Config {
    Config::parse(text, Path::new("test.toml")).expect("test config parses")
}

/// A port published by a container with an address of the port's family.
pub fn published(
    container: &str,
    host_ip: &str,
    host_port: u16,
    protocol: Protocol,
) -> PublishedPort {
    let v6 = host_ip.contains(':');
    PublishedPort {
        container: container.to_owned(),
        container_id: format!("{container}-id"),
        host_ip: host_ip.parse().unwrap(),
        host_port,
        protocol,
        container_ip: Some(
            if v6 { "fd00:d0c::2" } else { "172.17.0.2" }
                .parse()
                .unwrap(),
        ),
        container_port: 80,
        routed: false,
    }
}

/// A small policy grammar: trusted sources and exposures (some bound to containers "web" and
/// "db", or to one that is not there) over a few ports and sources of both families, default,
/// verdict and external interfaces.
pub fn generated_config() -> impl Strategy<Value = Config> {
    let source = prop::sample::select(vec![
        "any",
        "0.0.0.0/0",
        "10.0.0.0/24",
        "10.0.0.1",
        "10.0.0.5-10.0.0.9",
        "192.0.2.0/24",
        "203.0.113.7",
        "fd00::/64",
        "fd00::9",
        "2001:db8::1-2001:db8::9",
    ]);
    let port = prop::sample::select(vec![
        "8080/tcp",
        "8081/tcp",
        "5353/udp",
        "9000-9002/tcp",
        "8080/udp",
        "1-65535/tcp",
    ]);
    let container = prop::sample::select(vec![None, Some("web"), Some("db"), Some("gone")]);
    let exposure = (port, prop::collection::vec(source.clone(), 1..3), container);
    (
        prop::collection::vec(source, 0..3),
        prop::collection::vec(exposure, 0..4),
        prop::sample::select(vec!["deny", "allow", "audit"]),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(trusted, exposures, default, reject, external)| {
            let quote = |items: &[&str]| {
                items
                    .iter()
                    .map(|item| format!("\"{item}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let mut text = format!("trusted = [{}]\n", quote(&trusted));
            text += &format!("default = \"{default}\"\n");
            if reject {
                text += "verdict = \"reject\"\n";
            }
            if external {
                text += "external_interfaces = [\"eth0\"]\n";
            }
            for (port, from, container) in exposures {
                text += &format!("[[expose]]\nport = \"{port}\"\nfrom = [{}]\n", quote(&from));
                if let Some(container) = container {
                    text += &format!("container = \"{container}\"\n");
                }
            }
            config(&text)
        })
}
