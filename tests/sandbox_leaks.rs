//! No denied connection gets through while firewalld, Docker, dockgated or a container
//! restart, measured with streams of real connections from a denied and an allowed source.
#![cfg(feature = "sandbox-tests")]

mod common;

use std::process::Child;
use std::time::Duration;

use common::*;

const STREAM_RATE: u32 = 50;

fn start_stream(source: &str, seconds: u32) -> Child {
    start_stream_at(STREAM_RATE, source, seconds)
}

/// `rate` new connections a second from `source` to port 8080 for `seconds`.
fn start_stream_at(rate: u32, source: &str, seconds: u32) -> Child {
    start_stream_to(8080, rate, source, seconds)
}

/// The leak probe of issue 4: a denied and an allowed source each open 50 connections a second
/// while firewalld, Docker, dockgated and the container restart in every way, one at a time.
/// Nothing from the denied source may get through; the allowed source must work again before
/// each stream ends. Prints, per event, what leaked, what failed and when the policy was whole.
#[test]
fn no_denied_connection_gets_through_any_restart() {
    in_sandbox();
    add_client_address(1, "10.99.1.50");
    let _web = Container::httpd("leak-web", "-p 8080:80 --restart always --stop-timeout 1");
    let mut service = Service::start("leak", "trusted = [\"10.99.1.50\"]\n");
    service.wait_for_reconcile_after(0);
    // The first start may reload firewalld (registration, CleanupOnExit); let Docker rebuild.
    service.allowed_and_denied("first start");
    std::thread::sleep(Duration::from_secs(3));
    service.allowed_and_denied("settled");
    assert_eq!(
        cleanup_on_exit(),
        "no",
        "dockgate keeps firewalld from removing its rules when it stops"
    );

    const SECONDS: u32 = 15;
    let events = [
        "firewall-cmd --reload",
        "firewalld restart",
        "firewalld kill -9, start",
        "dockerd restart",
        "dockerd kill -9, start",
        "dockgated restart",
        "container restart",
    ];
    let mut report = Vec::new();
    for event in events {
        let denied = start_stream("10.99.1.2", SECONDS);
        let allowed = start_stream("10.99.1.50", SECONDS);
        std::thread::sleep(Duration::from_secs(1));
        let at = unix_now();
        match event {
            "firewall-cmd --reload" => drop(sh("firewall-cmd --reload")),
            "firewalld restart" => drop(sh("sandbox-ctl restart firewalld")),
            "firewalld kill -9, start" => drop(sh(
                "sandbox-ctl kill firewalld; sandbox-ctl start firewalld",
            )),
            "dockerd restart" => drop(sh("sandbox-ctl restart dockerd")),
            "dockerd kill -9, start" => {
                drop(sh("sandbox-ctl kill dockerd; sandbox-ctl start dockerd"))
            }
            "dockgated restart" => service.restart(),
            "container restart" => drop(sh("docker restart -t 1 leak-web")),
            _ => unreachable!(),
        }
        let (denied, allowed) = (finish_stream(denied), finish_stream(allowed));
        // The policy is whole again when the allowed source stops failing (the denied one never
        // succeeds); measured from the event to the start of the last failed attempt.
        let whole_after = allowed
            .last_failed
            .filter(|&failed| failed > at)
            .map_or(0.0, |failed| failed - at + 1.0 / f64::from(STREAM_RATE));
        assert_eq!(
            denied.attempts,
            (SECONDS * STREAM_RATE) as usize,
            "{event}: stream ran"
        );
        assert!(
            denied.open == 0,
            "{event}: {} denied attempts got through:\n{}",
            denied.open,
            service.log()
        );
        let mut note = "";
        if allowed.last_open <= allowed.last_failed {
            // Seen with Docker 20.10 after dockerd kill -9 + start: the killed container's
            // network namespace stays in docker0 with the same address and MAC and resets the
            // connections the bridge sends it (see remove_stale_docker0_ports); once with
            // Docker 28 after a reload. Tell that apart from dockgate blocking it: dockgate's
            // rules must be as planned, and removing the stale port or else a plain dockerd
            // restart (nothing from dockgate) must bring the allowed source back.
            eprintln!(
                "{event}: the allowed source did not work again within {SECONDS} s: {allowed:?}\n{}",
                diagnostics(&service)
            );
            assert_eq!(
                service.dockgate.reapply_writes(),
                0,
                "{event}: dockgate's rules are not the plan:\n{}",
                service.log()
            );
            let stale = remove_stale_docker0_ports();
            if stale.is_empty() {
                sh("sandbox-ctl restart dockerd");
                note = "  (Docker's forwarding came back only after another dockerd restart)";
            } else {
                note = "  (a stale docker0 port of the killed container answered; removed)";
            }
            assert_eq!(
                probe_until_from("10.99.1.50", 8080, "open", Duration::from_secs(20)),
                "open",
                "{event}: the allowed source stays blocked ({stale:?} removed):\n{}",
                service.log()
            );
        }
        if note.is_empty() && !remove_stale_docker0_ports().is_empty() {
            // It did not happen to get in the way this time; it would in a later event.
            note = "  (a stale docker0 port of the killed container was removed after it)";
        }
        report.push(format!(
            "{:<26} {:>6} {:>6} of {:<5} {:>8.2} s{note}",
            event, denied.open, allowed.failed, allowed.attempts, whole_after
        ));
    }
    eprintln!(
        "{} leak probe ({STREAM_RATE}/s from each source)\n{:<26} {:>6} {:>15} {:>10}\n{}",
        stack(),
        "event",
        "leaked",
        "allowed failed",
        "whole after",
        report.join("\n")
    );

    // --remove gives firewalld.conf's CleanupOnExit back.
    service.signal("TERM");
    let _ = service.child.wait();
    service.dockgate.remove();
    assert_eq!(cleanup_on_exit(), "yes");
}

/// The moment firewalld starts is the narrowest window (README: it flushes mangle a few
/// milliseconds before nat); 50 attempts a second hardly ever meet it. Here a denied source
/// tries 1000 times a second while firewalld restarts, DOCKGATE_RESTARTS times (default 20),
/// graceful and kill -9 in turn. A benchmark: tests/bench/events runs it and prints the counts
/// (no assertion on them: the leak test above asserts that none get through at 50/s).
#[test]
#[ignore = "a benchmark: tests/bench/events runs it"]
fn firewalld_restarts_under_a_thousand_attempts_a_second() {
    in_sandbox();
    add_client_address(1, "10.99.1.50");
    let _web = Container::httpd("fast-web", "-p 8080:80");
    let service = Service::start("fast", "trusted = [\"10.99.1.50\"]\n");
    service.wait_until_settled();
    service.allowed_and_denied("start");
    let restarts: usize = std::env::var("DOCKGATE_RESTARTS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(20);
    let mut leaked = Vec::new();
    for restart in 0..restarts {
        let denied = start_stream_at(1000, "10.99.1.2", 4);
        std::thread::sleep(Duration::from_secs(1));
        if restart % 2 == 0 {
            sh("sandbox-ctl restart firewalld");
        } else {
            sh("sandbox-ctl kill firewalld; sandbox-ctl start firewalld");
        }
        let denied = finish_stream(denied);
        assert!(denied.attempts >= 3900, "stream ran: {denied:?}");
        leaked.push(denied.open);
        service.allowed_and_denied(&format!("after restart {}", restart + 1));
        // firewalld 1.x adds its own rules once more on every start (README): a reload between
        // restarts keeps each restart as slow as the first.
        sh("firewall-cmd --reload");
        service.allowed_and_denied(&format!("after the reload after restart {}", restart + 1));
    }
    eprintln!(
        "{}: denied attempts that got through each of {restarts} firewalld restarts \
         (graceful, kill -9 in turn; 1000/s): {leaked:?}",
        stack()
    );
}
