//! Who was refused (issue 20): the recording rules log each new connection from outside that no
//! grant admits to NFLOG, dockgated counts them per host port and source, and `dockgatectl
//! refused`, `suggest` and the audit mode are built on that. Real packets from the client
//! namespaces, read back through the API.
#![cfg(feature = "sandbox-tests")]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;

/// client1's own address: neither trusted nor exposed.
const CLIENT1: &str = "10.99.1.2";
const CLIENT1_V6: &str = "fd99:1::2";
/// Two more addresses of client1 (add_client_address), for the suggest test.
const SECOND: &str = "10.99.1.61";
const OTHER: &str = "10.99.1.62";
/// client2, behind ext2.
const CLIENT2: &str = "10.99.2.2";

/// `dockgatectl refused --json` since `since`: (port/protocol, source, would_be) -> entry.
fn refused(since: &str) -> BTreeMap<(String, String, bool), serde_json::Value> {
    let (ok, stdout, stderr) = dockgatectl(&format!("--json refused --since {since}"));
    assert!(ok, "dockgatectl refused: {stderr}");
    let entries: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap();
    entries
        .into_iter()
        .map(|entry| {
            (
                (
                    format!("{}/{}", entry["port"], entry["protocol"].as_str().unwrap()),
                    entry["source"].as_str().unwrap().to_owned(),
                    entry["would_be"] == true,
                ),
                entry,
            )
        })
        .collect()
}

fn count_of(since: &str, port: &str, source: &str, would_be: bool) -> u64 {
    refused(since)
        .get(&(port.to_owned(), source.to_owned(), would_be))
        .and_then(|entry| entry["count"].as_u64())
        .unwrap_or(0)
}

/// Waits until the count for (port, source) reaches `expected` (the table is fed as the kernel
/// logs; a second at most), then a moment more to see that it stays there.
fn settled_count(port: &str, source: &str, would_be: bool, expected: u64) -> u64 {
    eventually(Duration::from_secs(10), || {
        count_of("1h", port, source, would_be) >= expected
    });
    std::thread::sleep(Duration::from_millis(1500));
    count_of("1h", port, source, would_be)
}

fn probe_source(source: &str, host: &str, port: u16) -> String {
    match source {
        CLIENT1 | CLIENT1_V6 => probe(host, port),
        CLIENT2 => {
            let (_, stdout, _) = try_sh(&format!("sandbox-ctl probe --client 2 10.99.2.1 {port}"));
            stdout.trim().to_owned()
        }
        other => probe_from(other, host, port),
    }
}

fn explain(source: &str, port: &str) -> String {
    sh(&format!(
        "busctl --system call {API} Explain ss {source} {port}"
    ))
}

#[test]
fn deny_counts_each_refused_connection_by_the_host_port_it_was_made_to() {
    in_sandbox();
    // Two host ports leading to the same container port.
    // --restart always: the container comes back with dockerd's restart below.
    let _web = Container::httpd(
        "refused-web",
        "-p 8080:80 -p 8081:80 --restart always --stop-timeout 1",
    );
    wait_for_docker_rules(8081);
    let service = Service::start("refused-deny", "default = \"deny\"\n");
    service.wait_until_settled();
    service.wait_for_api();
    let started = unix_now() as u64;
    assert!(
        eventually(Duration::from_secs(5), || service
            .log()
            .contains("recording refused connections")),
        "{}",
        service.log()
    );
    for _ in 0..20 {
        assert_eq!(probe(HOST_V4, 8080), "dropped");
    }
    for _ in 0..5 {
        assert_eq!(probe(HOST_V4, 8081), "dropped");
    }
    for _ in 0..3 {
        assert_eq!(probe(HOST_V6, 8080), "dropped");
    }
    let ended = unix_now() as u64 + 1;
    assert_eq!(settled_count("8080/tcp", CLIENT1, false, 20), 20);
    assert_eq!(settled_count("8081/tcp", CLIENT1, false, 5), 5);
    assert_eq!(settled_count("8080/tcp", CLIENT1_V6, false, 3), 3);
    let table = refused("1h");
    assert_eq!(table.len(), 3, "{table:?}");
    for entry in table.values() {
        let (first, last) = (
            entry["first_seen"].as_u64().unwrap(),
            entry["last_seen"].as_u64().unwrap(),
        );
        assert!(
            started <= first && first <= last && last <= ended,
            "{started} <= {first} <= {last} <= {ended}: {table:?}\n{}",
            service.log()
        );
    }
    // The table as an admin reads it, and by port.
    let (ok, text, _) = dockgatectl("refused");
    assert!(ok);
    assert!(
        text.contains("28 connections since")
            && text.contains("8080/tcp")
            && text.contains(CLIENT1),
        "{text}"
    );
    let (_, only, _) = dockgatectl("--json refused --port 8081");
    assert_eq!(
        serde_json::from_str::<Vec<serde_json::Value>>(&only)
            .unwrap()
            .len(),
        1,
        "{only}"
    );
    let (ok, _, error) = dockgatectl("refused --port http");
    assert!(!ok && error.contains("--port"), "{error}");
    // Nothing recorded for a source a grant admits.
    sh(&format!("{DOCKGATECTL} expose 8080/tcp --from {CLIENT1}"));
    assert_eq!(
        probe_until(HOST_V4, 8080, "open", Duration::from_secs(5)),
        "open"
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(count_of("1h", "8080/tcp", CLIENT1, false), 20);
    // The table outlives a restart.
    let mut service = service;
    service.restart();
    service.wait_for_api();
    assert_eq!(
        count_of("1h", "8081/tcp", CLIENT1, false),
        5,
        "{}",
        service.log()
    );
    // A firewalld reload and a dockerd restart lose no recording rule: the next refused
    // connection is counted after each.
    let mut expected = 5;
    for event in ["firewall-cmd --reload", "sandbox-ctl restart dockerd"] {
        let rebuilds = || {
            service
                .log()
                .matches("rebuild after the firewalld reload is over")
                .count()
        };
        let rebuilt = rebuilds();
        sh(event);
        if event.starts_with("firewall-cmd") {
            assert!(
                eventually(Duration::from_secs(20), || rebuilds() > rebuilt),
                "{}",
                service.log()
            );
        } else {
            // The container is back when Docker's DNAT for its port is.
            assert!(eventually(Duration::from_secs(20), || {
                sh("iptables -t nat -S DOCKER").contains("--dport 8081")
            }));
        }
        assert_eq!(
            probe_until(HOST_V4, 8081, "dropped", Duration::from_secs(10)),
            "dropped",
            "after {event}"
        );
        expected += 1;
        assert_eq!(
            settled_count("8081/tcp", CLIENT1, false, expected),
            expected,
            "after {event}: {}\n{}",
            sh("iptables -S FORWARD"),
            service.log()
        );
    }
}

/// A flood costs bounded work: the rule logs at most `per_second` a second after a burst of as
/// many, whatever arrives; everything is refused all the same.
#[test]
fn a_flood_of_refused_connections_is_counted_up_to_the_rate_limit() {
    in_sandbox();
    let _web = Container::httpd("refused-flood", "-p 8082:80");
    wait_for_docker_rules(8082);
    let service = Service::start(
        "refused-flood",
        "default = \"deny\"\nverdict = \"reject\"\n[refused]\nper_second = 10\n",
    );
    service.wait_until_settled();
    service.wait_for_api();
    let monitor = RefusedChangedMonitor::start();
    let stream = finish_stream(start_stream_to(8082, 200, CLIENT1, 3));
    assert_eq!(stream.open, 0, "{stream:?}");
    assert!(stream.attempts >= 300, "{stream:?}");
    std::thread::sleep(Duration::from_millis(1500));
    let counted = count_of("1h", "8082/tcp", CLIENT1, false);
    eprintln!(
        "{} refused connections in 3 s, {counted} counted",
        stream.attempts
    );
    // A burst of 10, then 10 a second for 3 s (and the rule's token bucket rounding).
    assert!((10..=45).contains(&counted), "{counted} counted");

    // RefusedChanged: at most once a second through the flood (3 s, and the table's last
    // change after it), and with nothing in it, so no address reaches every listener.
    let signals = monitor.signals();
    assert!(
        (1..=5).contains(&signals.len()),
        "{} RefusedChanged in 3 s:\n{}",
        signals.len(),
        monitor.text()
    );
    for body in &signals {
        assert!(body.trim().is_empty(), "RefusedChanged carries {body:?}");
    }
    assert!(!monitor.text().contains(CLIENT1), "{}", monitor.text());

    // The view is polkit's read: root reads it, nobody (no rule grants read) gets NotAuthorized.
    assert!(busctl("root", "ListRefused t 0").0);
    let refused = dbus_error("nobody", "ListRefused", "uint64:0");
    assert!(
        refused.contains("org.dockgate.Dockgate1.Error.NotAuthorized")
            && refused.contains("org.dockgate.Dockgate1.read"),
        "{refused}"
    );
}

/// dbus-monitor watching for RefusedChanged; stopped when dropped.
struct RefusedChangedMonitor {
    child: std::process::Child,
    output: std::path::PathBuf,
}

impl RefusedChangedMonitor {
    /// Returns once the monitor runs: it waits for a signal of the same name it emits itself.
    fn start() -> Self {
        let output =
            std::env::temp_dir().join(format!("dockgate-test-{}-refused.monitor", stack()));
        let child = std::process::Command::new("dbus-monitor")
            .args(["--system", "type='signal',member='RefusedChanged'"])
            .stdout(std::fs::File::create(&output).unwrap())
            .spawn()
            .unwrap();
        let monitor = RefusedChangedMonitor { child, output };
        assert!(
            eventually(Duration::from_secs(10), || {
                sh("busctl --system emit /org/dockgate/Test org.dockgate.Test RefusedChanged");
                monitor.text().contains("path=/org/dockgate/Test")
            }),
            "dbus-monitor saw nothing"
        );
        monitor
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.output).unwrap_or_default()
    }

    /// The body of each RefusedChanged dockgated sent (not the monitor's own).
    fn signals(&self) -> Vec<String> {
        self.text()
            .split("\nsignal ")
            .filter(|message| message.contains("path=/org/dockgate/Dockgate1"))
            .map(|message| {
                message
                    .split_once('\n')
                    .map_or("", |(_, body)| body)
                    .to_owned()
            })
            .collect()
    }
}

impl Drop for RefusedChangedMonitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.output);
    }
}

#[test]
fn audit_lets_in_and_records_what_deny_would_refuse_and_one_word_switches() {
    in_sandbox();
    let _web = Container::httpd("refused-audit", "-p 8083:80");
    wait_for_docker_rules(8083);
    let service = Service::start(
        "refused-audit",
        "default = \"audit\"\ntrusted = [\"10.99.1.50\"]\n",
    );
    service.wait_until_settled();
    service.wait_for_api();
    assert_eq!(probe(HOST_V4, 8083), "open");
    assert_eq!(probe(HOST_V4, 8083), "open");
    assert_eq!(settled_count("8083/tcp", CLIENT1, true, 2), 2);
    assert_eq!(count_of("1h", "8083/tcp", CLIENT1, false), 0);
    let why = explain(CLIENT1, "8083/tcp");
    assert!(
        why.starts_with("bs true") && why.contains("open, audited"),
        "{why}"
    );
    let (_, ports, _) = dockgatectl("ports");
    assert!(ports.contains("open, audited"), "{ports}");
    let (_, listed, _) = dockgatectl("--json ports");
    assert!(listed.contains("\"audited\":true"), "{listed}");
    // A trusted source is neither refused nor recorded.
    add_client_address(1, "10.99.1.50");
    assert_eq!(probe_from("10.99.1.50", HOST_V4, 8083), "open");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        count_of("1h", "8083/tcp", "10.99.1.50", true),
        0,
        "{:?}",
        refused("1h")
    );
    // One word and a reload.
    let config = service.dockgate.dir.join("dockgate.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("\"audit\"", "\"deny\"")).unwrap();
    sh(&format!("{DOCKGATECTL} reload"));
    assert_eq!(
        probe_until(HOST_V4, 8083, "dropped", Duration::from_secs(5)),
        "dropped"
    );
    assert!(explain(CLIENT1, "8083/tcp").starts_with("bs false"));
    assert_eq!(probe_from("10.99.1.50", HOST_V4, 8083), "open");
    assert!(settled_count("8083/tcp", CLIENT1, false, 1) >= 1);
}

#[test]
fn the_suggested_policy_admits_exactly_the_sources_audit_recorded() {
    in_sandbox();
    let _web = Container::httpd("refused-suggest-web", "-p 8084:80");
    let _db = Container::httpd("refused-suggest-db", "-p 8085:80");
    wait_for_docker_rules(8085);
    add_client_address(1, SECOND);
    add_client_address(1, OTHER);
    let service = Service::start("refused-suggest", "default = \"audit\"\n");
    service.wait_until_settled();
    service.wait_for_api();
    let recorded = [(CLIENT1, 8084), (SECOND, 8084), (CLIENT2, 8085)];
    for (source, port) in recorded {
        assert_eq!(
            probe_source(source, HOST_V4, port),
            "open",
            "{source} {port}"
        );
    }
    for (source, port) in recorded {
        assert_eq!(settled_count(&format!("{port}/tcp"), source, true, 1), 1);
    }
    let (ok, suggested, error) = dockgatectl("suggest --since 1h");
    assert!(ok, "{error}");
    eprintln!("{suggested}");
    let config = service.dockgate.dir.join("dockgate.toml");
    std::fs::write(&config, format!("default = \"deny\"\n{suggested}")).unwrap();
    let (ok, _, error) = dockgatectl(&format!("check-config {}", config.display()));
    assert!(
        ok,
        "check-config refuses the suggestion: {error}\n{suggested}"
    );
    sh(&format!("{DOCKGATECTL} reload"));
    std::thread::sleep(Duration::from_millis(500));
    for source in [CLIENT1, SECOND, CLIENT2, OTHER] {
        for port in [8084, 8085] {
            let expected = recorded.contains(&(source, port));
            let answer = if expected {
                let mut answer = String::new();
                for _ in 0..10 {
                    answer = probe_source(source, HOST_V4, port);
                    if answer == "open" {
                        break;
                    }
                }
                answer
            } else {
                probe_source(source, HOST_V4, port)
            };
            assert_eq!(
                answer == "open",
                expected,
                "{source} to {port}: {answer}\n{suggested}"
            );
        }
    }
}
