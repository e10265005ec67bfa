use std::path::Path;

use proptest::prelude::*;

use super::*;
use crate::config::Config;
use crate::exposures::listed;
use crate::policy::Policy;

const NOW: u64 = 1_800_000_000;

fn entry(port: u16, protocol: Protocol, source: &str, count: u64, would_be: bool) -> Entry {
    Entry {
        port,
        protocol,
        source: source.parse().unwrap(),
        count,
        first_seen: NOW - 7200,
        last_seen: NOW - 60,
        would_be,
    }
}

/// The suggestion pasted under `default = "deny"`, as check-config reads it.
fn pasted(text: &str) -> Policy {
    let config = Config::parse(
        &format!("default = \"deny\"\n{text}"),
        Path::new("pasted.toml"),
    )
    .unwrap_or_else(|error| panic!("{error}\n{text}"));
    Policy::new(&config, &listed(&config, &[]), &[])
}

#[test]
fn three_sources_at_two_ports_become_two_exposures_with_their_counts() {
    let entries = vec![
        entry(8080, Protocol::Tcp, "203.0.113.7", 20, true),
        entry(8080, Protocol::Tcp, "198.51.100.4", 3, true),
        entry(8080, Protocol::Tcp, "198.51.100.4", 2, false),
        entry(5353, Protocol::Udp, "2001:db8::7", 1, true),
    ];
    let text = render(&entries, NOW - 86_400, NOW);
    insta::assert_snapshot!(text);
    let policy = pasted(&text);
    let admitted = |source: &str, port: u16, protocol: Protocol| {
        policy
            .grant_for(source.parse().unwrap(), port, protocol)
            .is_some()
    };
    assert!(admitted("203.0.113.7", 8080, Protocol::Tcp));
    assert!(admitted("198.51.100.4", 8080, Protocol::Tcp));
    assert!(admitted("2001:db8::7", 5353, Protocol::Udp));
    assert!(!admitted("203.0.113.7", 5353, Protocol::Udp));
    assert!(!admitted("203.0.113.8", 8080, Protocol::Tcp));
    assert!(!admitted("2001:db8::7", 5353, Protocol::Tcp));
}

#[test]
fn nothing_recorded_suggests_nothing_and_is_still_a_valid_config() {
    let text = render(&[], NOW - 3600, NOW);
    assert!(text.contains("Nothing was recorded"));
    assert!(pasted(&text).allows.is_empty());
}

proptest! {
    /// Whatever was recorded, the suggestion is a config check-config accepts, and under
    /// "deny" it admits every recorded (source, port) and, of the others, only what a source
    /// trusted for reaching many ports reaches.
    #[test]
    fn the_suggestion_admits_exactly_what_was_recorded(
        recorded in prop::collection::vec(
            (prop::sample::select(vec![80u16, 443, 8080, 9000]),
             prop::sample::select(vec![Protocol::Tcp, Protocol::Udp]),
             prop::sample::select(vec!["10.0.0.1", "10.0.0.2", "192.0.2.9", "fd00::1", "2001:db8::7"]),
             1u64..50,
             any::<bool>()),
            0..20),
    ) {
        let entries: Vec<Entry> = recorded
            .iter()
            .map(|(port, protocol, source, count, would_be)| entry(*port, *protocol, source, *count, *would_be))
            .collect();
        let text = render(&entries, NOW - 86_400, NOW);
        let policy = pasted(&text);
        let mut ports_of: BTreeMap<IpAddr, BTreeSet<(u16, Protocol)>> = BTreeMap::new();
        for entry in &entries {
            ports_of.entry(entry.source).or_default().insert((entry.port, entry.protocol));
        }
        for source in ["10.0.0.1", "10.0.0.2", "192.0.2.9", "fd00::1", "2001:db8::7", "10.0.0.3"] {
            let address: IpAddr = source.parse().unwrap();
            let ports = ports_of.get(&address).cloned().unwrap_or_default();
            let trusted = ports.len() >= TRUSTED_FROM_PORTS;
            for port in [80u16, 443, 8080, 9000] {
                for protocol in [Protocol::Tcp, Protocol::Udp] {
                    let admitted = policy.grant_for(address, port, protocol).is_some();
                    prop_assert_eq!(
                        admitted,
                        trusted || ports.contains(&(port, protocol)),
                        "{} to {}/{}\n{}", source, port, protocol, text
                    );
                }
            }
        }
    }
}
