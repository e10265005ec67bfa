//! The long-running dockgated against real firewalld and Docker restarts, reloads and signals,
//! judged by real packets.
#![cfg(feature = "sandbox-tests")]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A running dockgated; SIGTERM and `--remove` when dropped.
struct Service {
    dockgate: Dockgate,
    child: Child,
}

impl Service {
    fn start(name: &str, config: &str) -> Self {
        let dockgate = Dockgate::new(name);
        std::fs::write(dockgate.dir.join("dockgate.toml"), config).unwrap();
        let log = std::fs::File::create(dockgate.dir.join("dockgated.log")).unwrap();
        let child = Command::new(DOCKGATED)
            .args([
                "--config",
                &dockgate.dir.join("dockgate.toml").display().to_string(),
            ])
            .args(["--state-dir", &dockgate.state_dir().display().to_string()])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Service { dockgate, child }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dockgate.dir.join("dockgated.log")).unwrap_or_default()
    }

    fn signal(&self, signal: &str) {
        sh(&format!("kill -{signal} {}", self.child.id()));
    }

    fn reconciles(&self) -> usize {
        self.log().matches("reconciled").count()
    }

    /// Waits until a reconcile after `count` earlier ones is logged.
    fn wait_for_reconcile_after(&self, count: usize) {
        assert!(
            eventually(Duration::from_secs(20), || self.reconciles() > count),
            "no reconcile logged:\n{}",
            self.log()
        );
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = try_sh(&format!("kill -TERM {}", self.child.id()));
        let _ = self.child.wait();
    }
}

fn allowed_and_denied(when: &str) {
    assert_eq!(
        probe_until_from("10.99.1.50", 8080, "open", Duration::from_secs(15)),
        "open",
        "{when}: the trusted source"
    );
    assert_eq!(probe(HOST_V4, 8080), "dropped", "{when}: a denied source");
}

fn probe_until_from(address: &str, port: u16, expected: &str, within: Duration) -> String {
    let start = Instant::now();
    loop {
        let (_, answer, _) = try_sh(&format!(
            "sandbox-ctl probe --from {address} {HOST_V4} {port}"
        ));
        let answer = answer.trim().to_owned();
        if answer == expected || start.elapsed() > within {
            return answer;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn zone_of(interface: &str) -> String {
    let (_, stdout, _) = try_sh(&format!("firewall-cmd --get-zone-of-interface={interface}"));
    stdout.trim().to_owned()
}

#[test]
fn the_policy_comes_back_after_reloads_and_restarts_of_firewalld_and_docker() {
    in_sandbox();
    add_client_address(1, "10.99.1.50");
    let _web = Container::httpd("svc-web", "-p 8080:80 --restart always --stop-timeout 1");
    let service = Service::start(
        "restarts",
        "trusted = [\"10.99.1.50\"]\n[zone]\nbind = \"internal\"\n",
    );
    service.wait_for_reconcile_after(0);
    allowed_and_denied("first start");
    assert!(eventually(Duration::from_secs(10), || zone_of("docker0") == "internal"));

    // firewalld reload: firewalld restores the rules itself; the daemon sees Reloaded.
    let before = service.reconciles();
    sh("firewall-cmd --reload");
    service.wait_for_reconcile_after(before);
    allowed_and_denied("after a firewalld reload");
    assert!(eventually(Duration::from_secs(10), || zone_of("docker0") == "internal"));

    // dockerd restart without docker.service's prestart: the daemon returns the bridges when
    // the event stream ends, Docker starts, and the daemon binds them again.
    let before = service.reconciles();
    let (started, _, stderr) = try_sh("sandbox-ctl restart dockerd");
    assert!(started, "dockerd started again: {stderr}");
    service.wait_for_reconcile_after(before);
    assert!(
        eventually(Duration::from_secs(15), || zone_of("docker0") == "internal"),
        "docker0 back in the bound zone:\n{}",
        service.log()
    );
    allowed_and_denied("after a dockerd restart");

    // firewalld killed and started: it sends no Reloaded, the daemon sees it on the bus.
    sh("sandbox-ctl kill firewalld");
    sh("sandbox-ctl start firewalld");
    assert!(
        eventually(Duration::from_secs(20), || zone_of("docker0") == "internal"),
        "docker0 back in the bound zone after firewalld restarted:\n{}",
        service.log()
    );
    allowed_and_denied("after firewalld was killed and started");
    assert!(
        service.log().contains("firewalld started"),
        "{}",
        service.log()
    );
}

#[test]
fn sighup_applies_a_new_config_and_keeps_the_old_one_when_the_new_one_is_bad() {
    in_sandbox();
    add_client_address(1, "10.99.1.50");
    let _web = Container::httpd("svc-hup", "-p 8080:80");
    let service = Service::start("hup", "trusted = [\"10.99.1.50\"]\n");
    service.wait_for_reconcile_after(0);
    allowed_and_denied("first config");

    let config = service.dockgate.dir.join("dockgate.toml");
    std::fs::write(&config, "trusted = [\"10.99.1.0/24\"]\n").unwrap();
    let before = service.reconciles();
    service.signal("HUP");
    service.wait_for_reconcile_after(before);
    assert_eq!(
        probe(HOST_V4, 8080),
        "open",
        "the new config lets client1 in"
    );

    std::fs::write(&config, "trusted = [\"10.99.1.0/33\"]\n").unwrap();
    service.signal("HUP");
    assert!(eventually(Duration::from_secs(5), || service
        .log()
        .contains("keeping the last good policy")));
    assert!(
        service.log().contains("dockgate.toml:1: trusted[0]"),
        "{}",
        service.log()
    );
    assert_eq!(
        probe(HOST_V4, 8080),
        "open",
        "the old policy is still in force"
    );

    // SIGTERM: the daemon exits and the rules stay (fail closed).
    std::fs::write(&config, "trusted = [\"10.99.1.50\"]\n").unwrap();
    let before = service.reconciles();
    service.signal("HUP");
    service.wait_for_reconcile_after(before);
    let mut service = service;
    service.signal("TERM");
    let status = service.child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(
        probe(HOST_V4, 8080),
        "dropped",
        "the rules outlive the daemon"
    );
}

#[test]
fn started_before_firewalld_and_docker_it_applies_the_policy_once_they_run() {
    in_sandbox();
    add_client_address(1, "10.99.1.50");
    let _web = Container::httpd("svc-early", "-p 8080:80 --restart always --stop-timeout 1");
    sh("sandbox-ctl stop dockerd");
    sh("sandbox-ctl stop firewalld");
    let service = Service::start("early", "trusted = [\"10.99.1.50\"]\n");
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        service.log().contains("reconcile failed"),
        "{}",
        service.log()
    );
    sh("sandbox-ctl start firewalld");
    sh("sandbox-ctl start dockerd");
    assert!(
        eventually(Duration::from_secs(20), || {
            sh("firewall-cmd --direct --get-all-rules").contains("dockgate:trusted")
        }),
        "{}",
        service.log()
    );
    allowed_and_denied("after firewalld and Docker started");
}
