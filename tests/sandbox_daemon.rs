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

/// Rules with dockgate's marker in the kernel (mangle and filter, one family).
fn kernel_rules(tool: &str) -> Vec<String> {
    let mut rules: Vec<String> = sh(&format!("{tool}-save -t mangle; {tool}-save -t filter"))
        .lines()
        .filter(|line| line.contains("dockgate"))
        .map(str::to_owned)
        .collect();
    rules.sort();
    rules
}

#[test]
fn killed_in_the_middle_of_a_large_apply_the_next_start_converges_exactly() {
    in_sandbox();
    let mut config = String::from("trusted = [\"10.99.1.50\"]\n");
    for i in 0..1000 {
        config += &format!(
            "[[expose]]\nport = \"{}/tcp\"\nfrom = [\"10.200.{}.{}\"]\n",
            20000 + i,
            i / 250,
            i % 250 + 1
        );
    }
    let first = Service::start("kill9", &config);
    // The apply of 1000 exposures takes seconds; kill once a few hundred rules are in.
    assert!(
        eventually(Duration::from_secs(60), || kernel_rules("iptables").len()
            > 200),
        "{}",
        first.log()
    );
    sh(&format!("kill -KILL {}", first.child.id()));
    let partial = kernel_rules("iptables").len();
    eprintln!(
        "{}: killed with {partial} IPv4 rules in the kernel",
        stack()
    );

    let second = Service::start("kill9-again", &config);
    assert!(
        eventually(Duration::from_secs(120), || second.reconciles() > 0),
        "{}",
        second.log()
    );
    // Exactly the plan: a one-shot apply finds nothing to do, the kernel holds no duplicate,
    // and the permanent layer equals the runtime one.
    assert_eq!(second.dockgate.reapply_writes(), 0);
    let rules = kernel_rules("iptables");
    let unique: std::collections::BTreeSet<&String> = rules.iter().collect();
    assert_eq!(rules.len(), unique.len(), "duplicate rules in the kernel");
    assert!(
        rules
            .iter()
            .filter(|rule| rule.contains("dockgate:expose:"))
            .count()
            == 1000,
        "{} exposure rules",
        rules.len()
    );
    let runtime: std::collections::BTreeSet<String> = sh("firewall-cmd --direct --get-all-rules")
        .lines()
        .filter(|line| line.contains("dockgate"))
        .map(str::to_owned)
        .collect();
    let permanent: std::collections::BTreeSet<String> =
        sh("firewall-cmd --permanent --direct --get-all-rules")
            .lines()
            .filter(|line| line.contains("dockgate"))
            .map(str::to_owned)
            .collect();
    assert_eq!(runtime, permanent);
    drop(first);
}

#[test]
fn a_hundred_containers_at_once_make_a_bounded_number_of_reconciles() {
    in_sandbox();
    // Every container is named by an exposure, so every start changes the plan: the bound
    // comes from coalescing, not from events that change nothing.
    let mut config = String::from("trusted = [\"10.99.1.50\"]\n");
    for i in 1..=100 {
        config += &format!(
            "[[expose]]\nport = \"{}/tcp\"\nfrom = [\"any\"]\ncontainer = \"burst-{i}\"\n",
            30000 + i
        );
    }
    let service = Service::start("burst", &config);
    service.wait_for_reconcile_after(0);
    std::thread::sleep(Duration::from_millis(500));
    let before = service.reconciles();
    let started = Instant::now();
    sh("for i in $(seq 1 100); do \
          docker run -d --name burst-$i -p $((30000+i)):80 bb /bin/httpd -f -p 80 -h /www >/dev/null & \
        done; \
        docker run -d --name burst-unexposed -p 31000:80 bb /bin/httpd -f -p 80 -h /www >/dev/null; \
        wait");
    let burst = started.elapsed();
    assert!(
        eventually(Duration::from_secs(30), || probe(HOST_V4, 30100) == "open"
            && probe(HOST_V4, 30001) == "open"),
        "{}",
        service.log()
    );
    // Let the last events settle before counting.
    std::thread::sleep(Duration::from_secs(3));
    let reconciles = service.reconciles() - before;
    eprintln!(
        "{}: 101 container starts over {:.1} s made {reconciles} reconciles",
        stack(),
        burst.as_secs_f64()
    );
    // At most one per second of burst (DOCKER_BURST_GAP) plus the tail, far below one per event.
    assert!(
        reconciles as f64 <= burst.as_secs_f64() + 5.0 && reconciles < 50,
        "{reconciles} reconciles for a burst of {burst:?}"
    );
    for port in [30001, 30050, 30100] {
        assert_eq!(probe(HOST_V4, port), "open", "exposed container on {port}");
    }
    assert_eq!(
        probe(HOST_V4, 31000),
        "dropped",
        "an unexposed container stays denied"
    );
    assert_eq!(
        service.dockgate.reapply_writes(),
        0,
        "the end state is the plan"
    );
    let _ = try_sh("docker rm -f $(docker ps -aq --filter name=burst-)");
}
