use std::os::unix::fs::PermissionsExt;

use super::*;

fn snapshot() -> Snapshot {
    Snapshot {
        version: "0.1.0".to_owned(),
        default: "audit".to_owned(),
        firewalld_connected: true,
        docker_connected: false,
        rule_count: 42,
        last_reconcile_us: 1_800_000_000_000_000,
        last_reconcile_duration_us: Some(12_345),
        ports: [
            (8080, "tcp", "denied"),
            (8080, "tcp", "exposed"),
            (53, "udp", "denied"),
            (8081, "tcp", "open"),
            (9000, "tcp", "open, audited"),
        ]
        .map(|(host_port, protocol, state)| PortRow {
            host_port,
            protocol: protocol.to_owned(),
            state: state.to_owned(),
        })
        .to_vec(),
        exposure_origins: ["config", "runtime", "runtime"].map(str::to_owned).to_vec(),
        refused: [
            (8080, "tcp", 3, false),
            (8080, "tcp", 4, false),
            (53, "udp", 1, false),
            (9000, "tcp", 7, true),
            // A port no longer published, refused in the window all the same.
            (2222, "tcp", 2, false),
        ]
        .map(|(port, protocol, count, would_be)| RefusedRow {
            port,
            protocol: protocol.to_owned(),
            count,
            would_be,
        })
        .to_vec(),
    }
}

#[test]
fn every_measure_with_its_help_and_type() {
    insta::assert_snapshot!(render(&snapshot(), 1_800_000_090_500_000));
}

/// A host where nothing is published and dockgated never applied: every state and origin
/// still has its series (0), and no reconcile time is made up.
#[test]
fn a_host_with_nothing_yet() {
    let snapshot = Snapshot {
        version: "0.1.0".to_owned(),
        default: "allow".to_owned(),
        last_reconcile_duration_us: Some(0),
        ..Snapshot::default()
    };
    let text = render(&snapshot, 1_800_000_000_000_000);
    for line in [
        "dockgate_published_ports{state=\"denied\"} 0",
        "dockgate_published_ports{state=\"open\"} 0",
        "dockgate_exposures{origin=\"runtime\"} 0",
        "dockgate_rules 0",
        "dockgate_firewalld_connected 0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} in\n{text}");
    }
    assert!(!text.contains("reconcile"), "{text}");
}

/// Where "deny" is in force nothing is audited: no series for it, but for the connections an
/// earlier audit recorded in the window.
#[test]
fn audited_counts_only_where_there_is_an_audit() {
    let denying = Snapshot {
        default: "deny".to_owned(),
        ..snapshot()
    };
    let text = render(&denying, 1_800_000_090_500_000);
    let audited: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("dockgate_would_be_refused_connections{"))
        .collect();
    assert_eq!(
        audited,
        ["dockgate_would_be_refused_connections{port=\"9000\",protocol=\"tcp\"} 7"]
    );
    assert!(
        text.contains("dockgate_refused_connections{port=\"8081\",protocol=\"tcp\"} 0\n"),
        "{text}"
    );
}

/// An older dockgated without the LastReconcileDuration property: the duration is left out,
/// not reported as 0.
#[test]
fn no_duration_from_a_daemon_that_has_none() {
    let snapshot = Snapshot {
        last_reconcile_duration_us: None,
        ..snapshot()
    };
    let text = render(&snapshot, 1_800_000_000_000_000);
    assert!(
        text.contains("dockgate_last_reconcile_age_seconds 0\n"),
        "{text}"
    );
    assert!(!text.contains("duration"), "{text}");
}

#[test]
fn label_values_are_escaped() {
    assert_eq!(
        labels(&[("version", "a\"b\\c\nd")]),
        "{version=\"a\\\"b\\\\c\\nd\"}"
    );
}

#[test]
fn the_file_is_replaced_whole_and_nothing_else_is_left() {
    let dir = std::env::temp_dir().join(format!("dockgate-metrics-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("dockgate.prom");
    std::fs::write(&path, "old\n").unwrap();
    write_atomically(&path, "new\n").unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(names, ["dockgate.prom"]);
    // A directory that is not there: an error, and no file made anywhere.
    assert!(write_atomically(&dir.join("missing/dockgate.prom"), "x").is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}
