//! `dockgatectl metrics` against a running dockgated: promtool (Debian's prometheus package)
//! accepts it, and its numbers are what the API says; `dockgate_up 0` when dockgated is gone.
//! The timer and its service as installed (systemd/dockgate-metrics.*), run by the sandbox's
//! real systemd (tests/sandbox/lib.sh, start_systemd), write node_exporter's textfile whole.
#![cfg(feature = "sandbox-tests")]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;

const SYSTEMD: &str = "/run/sandbox/systemd";
/// node_exporter's textfile directory as the nested systemd's services see it (/var/lib is
/// private there: $SYSTEMD/var-lib).
const TEXTFILE_DIR: &str = "/run/sandbox/systemd/var-lib/node-exporter";

/// promtool's verdict on an exposition: whether it passed, and what it said.
fn promtool(text: &str, name: &str) -> (bool, String) {
    let file = std::env::temp_dir().join(format!("dockgate-test-{}-{name}.prom", stack()));
    std::fs::write(&file, text).unwrap();
    let (ok, stdout, stderr) = try_sh(&format!("promtool check metrics < {}", file.display()));
    let _ = std::fs::remove_file(&file);
    (ok, format!("{stdout}{stderr}"))
}

/// The value of one sample line (`name{labels}`) of an exposition.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .parse()
        .unwrap()
}

/// `dockgatectl --json ports`' entries in the states `dockgatectl ports` shows.
fn port_states() -> Vec<String> {
    let (ok, ports, stderr) = dockgatectl("ports --json");
    assert!(ok, "{stderr}");
    let ports: Vec<serde_json::Value> = serde_json::from_str(&ports).unwrap();
    ports
        .iter()
        .map(|port| {
            if port["audited"] == true {
                "open, audited".to_owned()
            } else {
                port["state"].as_str().unwrap().to_owned()
            }
        })
        .collect()
}

/// Each state's sample is how many ports `dockgatectl ports` shows in it.
fn assert_port_states(text: &str) {
    let states = port_states();
    for state in ["denied", "trusted-only", "exposed", "open", "open, audited"] {
        let count = states.iter().filter(|s| *s == state).count();
        assert_eq!(
            sample(
                text,
                &format!("dockgate_published_ports{{state=\"{state}\"}}")
            ),
            count as f64,
            "{state}: {states:?}\n{text}"
        );
    }
}

/// The connections to `port` (tcp) `dockgatectl refused` counts, would-be or refused, once
/// they reached `expected` (the table is fed as the kernel logs: a second at most).
fn refused_count(port: u16, would_be: bool, expected: u64) -> u64 {
    let count = || {
        let (ok, stdout, stderr) = dockgatectl("--json refused --since 5m");
        assert!(ok, "{stderr}");
        let entries: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap();
        entries
            .iter()
            .filter(|entry| entry["port"] == port && entry["would_be"] == would_be)
            .map(|entry| entry["count"].as_u64().unwrap())
            .sum::<u64>()
    };
    eventually(Duration::from_secs(10), || count() >= expected);
    count()
}

fn valid_exposition() -> String {
    let (ok, text, stderr) = dockgatectl("metrics");
    assert!(ok, "{stderr}");
    let (valid, complaints) = promtool(&text, "metrics");
    assert!(
        valid && complaints.trim().is_empty(),
        "{complaints}\n{text}"
    );
    text
}

#[test]
fn metrics_are_what_promtool_accepts_and_what_dockgated_says() {
    in_sandbox();
    let _web = Container::httpd("met-web", "-p 8080:80");
    let _other = Container::httpd("met-other", "-p 8081:80");
    let _shut = Container::httpd("met-shut", "-p 8082:80");
    wait_for_docker_rules(8082);
    let service = Service::start(
        "metrics",
        "default = \"deny\"\ntrusted = [\"10.99.1.50\"]\n\n[[expose]]\nport = \"8081/tcp\"\nfrom = [\"any\"]\n",
    );
    service.wait_for_api();
    service.wait_until_settled();
    let (ok, _, stderr) = dockgatectl("expose 8080/tcp --from 10.99.1.2");
    assert!(ok, "{stderr}");
    // Refused: four connections to 8082, each from a new source port.
    assert!(
        eventually(Duration::from_secs(5), || service
            .log()
            .contains("recording refused connections")),
        "{}",
        service.log()
    );
    for _ in 0..4 {
        assert_eq!(probe(HOST_V4, 8082), "dropped");
    }
    assert_eq!(refused_count(8082, false, 4), 4, "{}", service.log());

    let text = valid_exposition();
    assert_eq!(sample(&text, "dockgate_up"), 1.0);
    assert_eq!(sample(&text, "dockgate_firewalld_connected"), 1.0);
    assert_eq!(sample(&text, "dockgate_docker_connected"), 1.0);
    let rules = sh(&format!("busctl --system get-property {API} RuleCount"));
    assert_eq!(
        sample(&text, "dockgate_rules").to_string(),
        rules.trim().trim_start_matches("u "),
        "{text}"
    );
    assert!(rules.trim() != "u 0");
    assert_port_states(&text);
    // 8080 exposed to one source, 8081 to any (open), 8082 to the trusted one, both families
    // where Docker publishes both.
    assert!(
        sample(&text, "dockgate_published_ports{state=\"exposed\"}") >= 1.0,
        "{text}"
    );
    assert!(
        sample(&text, "dockgate_published_ports{state=\"open\"}") >= 1.0,
        "{text}"
    );
    assert!(
        sample(&text, "dockgate_published_ports{state=\"trusted-only\"}") >= 1.0,
        "{text}"
    );
    assert_eq!(sample(&text, "dockgate_exposures{origin=\"config\"}"), 1.0);
    assert_eq!(sample(&text, "dockgate_exposures{origin=\"runtime\"}"), 1.0);
    assert_eq!(
        sample(
            &text,
            "dockgate_refused_connections{port=\"8082\",protocol=\"tcp\"}"
        ),
        4.0,
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "dockgate_refused_connections{port=\"8080\",protocol=\"tcp\"}"
        ),
        0.0,
        "the exposed port: nobody refused\n{text}"
    );
    assert!(
        !text.contains("dockgate_would_be_refused_connections{"),
        "no audit, no audited counts\n{text}"
    );
    // No source address is a label: a scan must not make a series per address.
    assert!(!text.contains("10.99."), "{text}");
    let age = sample(&text, "dockgate_last_reconcile_age_seconds");
    assert!((0.0..60.0).contains(&age), "{text}");
    let duration = sample(&text, "dockgate_last_reconcile_duration_seconds");
    assert!(duration > 0.0 && duration < 30.0, "{text}");
    eprintln!("{}: last reconcile took {duration} s", stack());

    // dockgated gone: only dockgate_up 0, what an alert looks for, and the reason on stderr.
    drop(service);
    let (ok, text, stderr) = dockgatectl("metrics");
    assert!(!ok);
    assert_eq!(sample(&text, "dockgate_up"), 0.0, "{text}");
    assert!(stderr.contains("dockgated is not running"), "{stderr}");
    let (valid, complaints) = promtool(&text, "metrics-down");
    assert!(
        valid && complaints.trim().is_empty(),
        "{complaints}\n{text}"
    );
}

/// default = "audit": the ports no grant opens are "open, audited", and the connections
/// "deny" would refuse are counted apart from refused ones.
#[test]
fn an_audit_is_counted_as_what_deny_would_refuse() {
    in_sandbox();
    let _web = Container::httpd("met-audit", "-p 8083:80");
    wait_for_docker_rules(8083);
    let service = Service::start("metrics-audit", "default = \"audit\"\n");
    service.wait_for_api();
    service.wait_until_settled();
    assert!(
        eventually(Duration::from_secs(5), || service
            .log()
            .contains("recording refused connections")),
        "{}",
        service.log()
    );
    for _ in 0..3 {
        assert_eq!(probe(HOST_V4, 8083), "open");
    }
    assert_eq!(refused_count(8083, true, 3), 3, "{}", service.log());

    let text = valid_exposition();
    assert_port_states(&text);
    assert!(
        sample(&text, "dockgate_published_ports{state=\"open, audited\"}") >= 1.0,
        "{text}"
    );
    assert_eq!(
        sample(&text, "dockgate_published_ports{state=\"open\"}"),
        0.0,
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "dockgate_would_be_refused_connections{port=\"8083\",protocol=\"tcp\"}"
        ),
        3.0,
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "dockgate_refused_connections{port=\"8083\",protocol=\"tcp\"}"
        ),
        0.0,
        "{text}"
    );
}

/// The nested systemd goes when the test ends, the units it ran with it.
struct Booted;

impl Drop for Booted {
    fn drop(&mut self) {
        let _ = systemd("systemctl stop dockgate-metrics.timer dockgate-metrics.service");
        let _ = try_sh("sandbox-ctl stop systemd");
    }
}

/// The two units as `make install` installs them, but for dockgatectl's path (copied where
/// the service's ProtectHome= does not hide it) and the textfile directory (a drop-in, as an
/// admin would make one with `systemctl edit`).
fn install_units() {
    let units = format!("{SYSTEMD}/units");
    std::fs::create_dir_all(format!("{SYSTEMD}/bin")).unwrap();
    std::fs::copy(DOCKGATECTL, format!("{SYSTEMD}/bin/dockgatectl")).unwrap();
    let repo = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd");
    let service = std::fs::read_to_string(format!("{repo}/dockgate-metrics.service"))
        .unwrap()
        .replace(
            "/usr/bin/dockgatectl",
            &format!("{SYSTEMD}/bin/dockgatectl"),
        );
    std::fs::write(format!("{units}/dockgate-metrics.service"), service).unwrap();
    std::fs::copy(
        format!("{repo}/dockgate-metrics.timer"),
        format!("{units}/dockgate-metrics.timer"),
    )
    .unwrap();
    std::fs::create_dir_all(format!("{units}/dockgate-metrics.service.d")).unwrap();
    std::fs::write(
        format!("{units}/dockgate-metrics.service.d/textfile.conf"),
        "[Service]\nEnvironment=DOCKGATE_METRICS_FILE=/var/lib/node-exporter/dockgate.prom\n",
    )
    .unwrap();
    std::fs::create_dir_all(TEXTFILE_DIR).unwrap();
    sh("sandbox-ctl systemd systemctl daemon-reload");
}

fn file_names(dir: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn the_timer_writes_node_exporters_file_whole() {
    in_sandbox();
    let _web = Container::httpd("met-timer-web", "-p 8080:80");
    let service = Service::start("metrics-timer", "default = \"deny\"\n");
    service.wait_for_api();
    sh("sandbox-ctl start systemd");
    let _booted = Booted;
    install_units();
    let file = format!("{TEXTFILE_DIR}/dockgate.prom");

    // As installed, nothing runs it: the admin enables the timer.
    assert_eq!(
        systemd("systemctl is-enabled dockgate-metrics.timer")
            .1
            .trim(),
        "disabled"
    );
    let (ok, _, stderr) = systemd("systemctl start dockgate-metrics.service");
    assert!(ok, "{stderr}");
    let text = std::fs::read_to_string(&file).unwrap();
    let (valid, complaints) = promtool(&text, "textfile");
    assert!(
        valid && complaints.trim().is_empty(),
        "{complaints}\n{text}"
    );
    assert_eq!(sample(&text, "dockgate_up"), 1.0);
    assert_eq!(
        sh(&format!("stat -c %a {file}")).trim(),
        "644",
        "node_exporter's user reads it"
    );

    // A reader as node_exporter is one, as fast as it can, while the service writes again and
    // again: it never finds a file that is not a whole exposition, nor another file.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        let file = file.clone();
        std::thread::spawn(move || {
            let (mut reads, mut torn, mut strays) = (0, Vec::new(), Vec::new());
            while !stop.load(Ordering::Relaxed) {
                match std::fs::read_to_string(&file) {
                    Ok(text) => {
                        reads += 1;
                        if !(text.starts_with("# HELP dockgate_up")
                            && text.ends_with('\n')
                            && text.contains("# TYPE dockgate_last_reconcile_duration_seconds"))
                        {
                            torn.push(text);
                        }
                    }
                    Err(error) => torn.push(format!("read failed: {error}")),
                }
                for name in file_names(TEXTFILE_DIR) {
                    if name.ends_with(".prom") && name != "dockgate.prom" {
                        strays.push(name);
                    }
                }
            }
            (reads, torn, strays)
        })
    };
    for _ in 0..15 {
        let (ok, _, stderr) = systemd("systemctl start dockgate-metrics.service");
        assert!(ok, "{stderr}");
    }
    stop.store(true, Ordering::Relaxed);
    let (reads, torn, strays) = reader.join().unwrap();
    assert!(reads > 100, "only {reads} reads");
    assert!(
        torn.is_empty(),
        "{} torn of {reads}: {:?}",
        torn.len(),
        torn.first()
    );
    assert!(strays.is_empty(), "{strays:?}");
    assert_eq!(
        file_names(TEXTFILE_DIR),
        ["dockgate.prom"],
        "a temporary file left"
    );

    // The timer, made quick by a drop-in: it writes again and again by itself.
    std::fs::create_dir_all(format!("{SYSTEMD}/units/dockgate-metrics.timer.d")).unwrap();
    std::fs::write(
        format!("{SYSTEMD}/units/dockgate-metrics.timer.d/quick.conf"),
        "[Timer]\nOnBootSec=\nOnUnitActiveSec=\nOnActiveSec=1s\nOnUnitActiveSec=1s\nAccuracySec=100ms\n",
    )
    .unwrap();
    sh("sandbox-ctl systemd systemctl daemon-reload");
    let mtime = || sh(&format!("stat -c %.9Y {file}"));
    let before = mtime();
    let (ok, _, stderr) = systemd("systemctl start dockgate-metrics.timer");
    assert!(ok, "{stderr}");
    let mut seen = vec![before];
    assert!(
        eventually(Duration::from_secs(15), || {
            let now = mtime();
            if seen.last() != Some(&now) {
                seen.push(now);
            }
            seen.len() >= 3
        }),
        "the timer wrote {} times:\n{}",
        seen.len() - 1,
        systemd("journalctl --no-pager -o cat -u dockgate-metrics.service").1
    );
    drop(service);
}
