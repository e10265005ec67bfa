use proptest::prelude::*;

use super::*;

const T0: u64 = 1_790_000_000 - 1_790_000_000 % 60;

fn hit(port: u16, source: &str, source_port: u16, at: u64) -> Hit {
    Hit {
        port,
        protocol: Protocol::Tcp,
        source: source.parse().unwrap(),
        source_port,
        would_be: false,
        at,
    }
}

#[test]
fn prefixes_are_read_back_and_others_ignored() {
    assert_eq!(
        parse_prefix("dockgate:deny:8080/tcp"),
        Some((false, 8080, Protocol::Tcp))
    );
    assert_eq!(
        parse_prefix("dockgate:audit:53/udp"),
        Some((true, 53, Protocol::Udp))
    );
    for other in [
        "",
        "dockgate",
        "dockgate:deny",
        "dockgate:drop:80/tcp",
        "dockgate:deny:80",
        "dockgate:deny:80/icmp",
        "dockgate:deny:70000/tcp",
        "ulogd: 80/tcp",
        "xdockgate:deny:80/tcp",
    ] {
        assert_eq!(parse_prefix(other), None, "{other}");
    }
}

#[test]
fn the_source_and_its_port_are_read_from_ipv4_and_ipv6_headers() {
    // IPv4 with options (IHL 6), TCP from 203.0.113.7:40000.
    let mut v4 = vec![0u8; 28];
    v4[0] = 0x46;
    v4[9] = 6;
    v4[12..16].copy_from_slice(&[203, 0, 113, 7]);
    v4[24..26].copy_from_slice(&40000u16.to_be_bytes());
    assert_eq!(
        parse_packet(&v4),
        Some(("203.0.113.7".parse().unwrap(), 40000))
    );
    // IPv6, UDP from fd00::9:5353.
    let mut v6 = vec![0u8; 44];
    v6[0] = 0x60;
    v6[6] = 17;
    v6[8..24].copy_from_slice(&"fd00::9".parse::<Ipv6Addr>().unwrap().octets());
    v6[40..42].copy_from_slice(&5353u16.to_be_bytes());
    assert_eq!(parse_packet(&v6), Some(("fd00::9".parse().unwrap(), 5353)));
    // Cut short before the ports, an extension header, garbage.
    assert_eq!(
        parse_packet(&v4[..20]),
        Some(("203.0.113.7".parse().unwrap(), 0))
    );
    v6[6] = 0; // hop-by-hop options
    assert_eq!(parse_packet(&v6), Some(("fd00::9".parse().unwrap(), 0)));
    assert_eq!(parse_packet(&[]), None);
    assert_eq!(parse_packet(&[0x45, 0, 0]), None);
    assert_eq!(parse_packet(&[0x20; 40]), None);
}

#[test]
fn a_connection_is_counted_once_however_often_its_first_packet_is_retried() {
    let mut table = Table::new(100);
    let first = table.record(hit(8080, "203.0.113.7", 40000, T0));
    assert_eq!(
        first,
        Recorded {
            counted: true,
            new_pair: true
        }
    );
    // SYN retransmissions at 1, 3, 7, 15 s: the same connection.
    for later in [1, 3, 7, 15] {
        assert!(
            !table
                .record(hit(8080, "203.0.113.7", 40000, T0 + later))
                .counted
        );
    }
    // A new source port is a new connection, of a pair known already.
    assert_eq!(
        table.record(hit(8080, "203.0.113.7", 40001, T0 + 2)),
        Recorded {
            counted: true,
            new_pair: false
        }
    );
    // The same source port long after: a new connection.
    assert!(
        table
            .record(hit(
                8080,
                "203.0.113.7",
                40000,
                T0 + SAME_CONNECTION_SECONDS
            ))
            .counted
    );
    // No source port known: every packet counts.
    assert!(table.record(hit(8080, "203.0.113.7", 0, T0 + 3)).counted);
    assert!(table.record(hit(8080, "203.0.113.7", 0, T0 + 3)).counted);
    let listed = table.list(0);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].count, 5);
    assert_eq!(listed[0].first_seen, T0);
    assert_eq!(listed[0].last_seen, T0 + SAME_CONNECTION_SECONDS);
}

#[test]
fn ports_sources_and_audit_are_kept_apart_and_since_counts_recent_minutes() {
    let mut table = Table::new(1000);
    for n in 0..20 {
        table.record(hit(8080, "203.0.113.7", 30000 + n, T0 + 600));
    }
    for n in 0..5 {
        table.record(hit(8081, "203.0.113.7", 31000 + n, T0 + 601));
    }
    // An hour earlier, to 8080: outside "the last hour" seen from T0 + 600.
    for n in 0..7 {
        table.record(hit(8080, "203.0.113.7", 32000 + n, T0 - 3600));
    }
    table.record(Hit {
        would_be: true,
        ..hit(8080, "203.0.113.7", 33000, T0 + 602)
    });
    table.record(hit(8080, "2001:db8::7", 1234, T0 + 603));
    let recent = table.list(T0 + 600 - 3600);
    let summary: Vec<(u16, String, u64, bool)> = recent
        .iter()
        .map(|entry| {
            (
                entry.port,
                entry.source.to_string(),
                entry.count,
                entry.would_be,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (8080, "203.0.113.7".to_owned(), 20, false),
            (8080, "203.0.113.7".to_owned(), 1, true),
            (8080, "2001:db8::7".to_owned(), 1, false),
            (8081, "203.0.113.7".to_owned(), 5, false),
        ]
    );
    assert_eq!(recent[0].first_seen, T0 + 600);
    let all = table.list(0);
    assert_eq!(all[0].count, 27);
    assert_eq!(all[0].first_seen, T0 - 3600);
}

#[test]
fn the_oldest_go_first_and_the_table_survives_a_restart() {
    let mut table = Table::new(100);
    for n in 0..150u64 {
        let source = format!("10.0.{}.{}", n / 250, n % 250 + 1);
        table.record(hit(8080, &source, 1000, T0 + n * 60));
    }
    assert!(table.len() <= 100);
    let kept = table.list(0);
    assert!(kept.iter().all(|entry| entry.last_seen >= T0 + 50 * 60));
    assert!(kept.iter().any(|entry| entry.last_seen == T0 + 149 * 60));
    let json = serde_json::to_string(&table.saved()).unwrap();
    let restored = Table::restore(serde_json::from_str(&json).unwrap(), 100);
    assert_eq!(restored.list(0), kept);
    // A lower bound takes the oldest out at once.
    let mut smaller = restored;
    smaller.set_max_entries(20);
    assert!(smaller.len() <= 20);
}

/// A table file edited by hand (or by anything but dockgated) may hold any count: the minutes
/// of one source add up, and the next connection counts, without overflowing.
#[test]
fn counts_from_a_saved_table_saturate_instead_of_overflowing() {
    let entry = |count, at| Entry {
        port: 8080,
        protocol: Protocol::Tcp,
        source: "10.0.0.1".parse().unwrap(),
        count,
        first_seen: at,
        last_seen: at,
        would_be: false,
    };
    let saved = Saved {
        entries: vec![entry(u64::MAX, T0), entry(5, T0 + 60)],
    };
    let mut table = Table::restore(saved, 100);
    assert_eq!(table.list(0)[0].count, u64::MAX);
    assert!(table.record(hit(8080, "10.0.0.1", 40000, T0 + 70)).counted);
    assert_eq!(table.list(0)[0].count, u64::MAX);
    let saved = Saved {
        entries: vec![entry(u64::MAX, T0)],
    };
    let mut table = Table::restore(saved, 100);
    table.record(hit(8080, "10.0.0.1", 40001, T0 + 1));
    assert_eq!(table.list(0)[0].count, u64::MAX);
}

proptest! {
    /// Whatever arrives, the table stays within its bound, and while nothing is evicted every
    /// counted connection is in exactly one row.
    #[test]
    fn the_table_is_bounded_and_counts_every_counted_connection(
        hits in prop::collection::vec(
            (prop::sample::select(vec![80u16, 443, 8080]),
             prop::sample::select(vec!["10.0.0.1", "10.0.0.2", "fd00::1"]),
             0u16..4,
             0u64..7200,
             any::<bool>()),
            0..300),
        max in 100u32..200,
    ) {
        let mut bounded = Table::new(max);
        let mut unbounded = Table::new(1_000_000);
        let mut counted = 0u64;
        let mut hits: Vec<_> = hits;
        hits.sort_by_key(|hit| hit.3);
        for (port, source, source_port, at, would_be) in hits {
            let hit = Hit { would_be, ..hit(port, source, source_port, T0 + at) };
            let recorded = unbounded.record(hit);
            counted += u64::from(recorded.counted);
            prop_assert_eq!(bounded.record(hit).counted, recorded.counted);
            prop_assert!(bounded.len() <= max as usize);
        }
        let listed: u64 = unbounded.list(0).iter().map(|entry| entry.count).sum();
        prop_assert_eq!(listed, counted);
    }
}
