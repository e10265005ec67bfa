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
        Self::start_with_state(name, config, &[])
    }

    /// Starts with state files already in the state dir (name, content).
    fn start_with_state(name: &str, config: &str, files: &[(&str, String)]) -> Self {
        let dockgate = Dockgate::new(name);
        std::fs::write(dockgate.dir.join("dockgate.toml"), config).unwrap();
        std::fs::create_dir_all(dockgate.state_dir()).unwrap();
        for (file, content) in files {
            std::fs::write(dockgate.state_dir().join(file), content).unwrap();
        }
        let child = Self::spawn(&dockgate);
        Service { dockgate, child }
    }

    /// SIGTERM, wait for the exit, start again with the same config and state.
    fn restart(&mut self) {
        self.signal("TERM");
        let _ = self.child.wait();
        self.child = Self::spawn(&self.dockgate);
    }

    fn spawn(dockgate: &Dockgate) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dockgate.dir.join("dockgated.log"))
            .unwrap();
        Command::new(DOCKGATED)
            .args([
                "--config",
                &dockgate.dir.join("dockgate.toml").display().to_string(),
            ])
            .args(["--state-dir", &dockgate.state_dir().display().to_string()])
            .env("RUST_LOG", "info,dockgate=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
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

    /// Waits until the daemon owns its name on the system bus.
    fn wait_for_api(&self) {
        assert!(
            eventually(Duration::from_secs(20), || try_sh(
                "busctl --system status org.dockgate.Dockgate1"
            )
            .0),
            "the API is not on the bus:\n{}",
            self.log()
        );
    }

    /// Waits for the first reconcile, then for Docker to rebuild after the reload that first
    /// start may make (CleanupOnExit, first registration): the pause dockgate itself waits.
    fn wait_until_settled(&self) {
        self.wait_for_reconcile_after(0);
        std::thread::sleep(dockgate::reconcile::DOCKER_REBUILD_PAUSE);
    }

    /// The trusted source 10.99.1.50 reaches port 8080 (within 15 s), client1's own address does
    /// not; on failure, what the kernel and the daemons say.
    fn allowed_and_denied(&self, when: &str) {
        let answer = probe_until_from("10.99.1.50", 8080, "open", Duration::from_secs(15));
        assert_eq!(
            answer,
            "open",
            "{when}: the trusted source\n{}",
            diagnostics(self)
        );
        assert_eq!(probe(HOST_V4, 8080), "dropped", "{when}: a denied source");
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
    service.allowed_and_denied("first start");
    assert!(eventually(Duration::from_secs(10), || zone_of("docker0") == "internal"));

    // firewalld reload: firewalld restores the rules itself; the daemon sees Reloaded.
    let before = service.reconciles();
    sh("firewall-cmd --reload");
    service.wait_for_reconcile_after(before);
    service.allowed_and_denied("after a firewalld reload");
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
    service.allowed_and_denied("after a dockerd restart");

    // firewalld killed and started: it sends no Reloaded, the daemon sees it on the bus.
    sh("sandbox-ctl kill firewalld");
    sh("sandbox-ctl start firewalld");
    assert!(
        eventually(Duration::from_secs(20), || zone_of("docker0") == "internal"),
        "docker0 back in the bound zone after firewalld restarted:\n{}",
        service.log()
    );
    service.allowed_and_denied("after firewalld was killed and started");
    assert!(
        service.log().contains("firewalld started"),
        "{}",
        service.log()
    );
    // firewalld 1.x adds its own rules once more on every start with CleanupOnExit=no; the
    // admin is told (2.x deletes its table first).
    assert_eq!(
        service
            .log()
            .contains("removes the copies (firewalld#1192)"),
        stack() == "bookworm",
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
    service.allowed_and_denied("first config");

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
    service.allowed_and_denied("after firewalld and Docker started");
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
    let reloaded_before = docker_reloaded_at();
    let service = Service::start("burst", &config);
    service.wait_for_reconcile_after(0);
    // The first start reloads firewalld. Docker 28 re-creates its rules in the background, and
    // containers started meanwhile can deadlock it for good (moby/moby#50619; seen here: 100
    // `docker run` hung in the bridge driver behind handleFirewalldReloadNw). Not what this
    // test is about: start the burst once Docker says it is done.
    if service.log().contains("reloaded=true") && reloaded_before.is_some() {
        assert!(
            eventually(Duration::from_secs(20), || docker_reloaded_at()
                != reloaded_before),
            "Docker did not report handling firewalld's reload"
        );
    }
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

/// What one probe stream (50 new connections a second from one source) saw.
#[derive(Debug)]
struct Stream {
    attempts: usize,
    open: usize,
    failed: usize,
    last_open: Option<f64>,
    last_failed: Option<f64>,
}

const STREAM_RATE: u32 = 50;

fn start_stream(source: &str, seconds: u32) -> Child {
    start_stream_at(STREAM_RATE, source, seconds)
}

/// `rate` new connections a second from `source` to port 8080 for `seconds`.
fn start_stream_at(rate: u32, source: &str, seconds: u32) -> Child {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            "client1",
            "env",
            "PROBE_TIMES=1",
            "probe-stream",
            HOST_V4,
        ])
        .args(["8080", &rate.to_string(), &seconds.to_string(), source])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish_stream(child: Child) -> Stream {
    let output = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut lines = text.lines();
    let counts: Vec<usize> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(|count| count.parse().unwrap())
        .collect();
    let times: Vec<Option<f64>> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(|time| time.parse().ok())
        .collect();
    let (&[attempts, open, rejected, dropped], &[_, last_open, _, last_failed]) =
        (counts.as_slice(), times.as_slice())
    else {
        panic!("probe-stream printed {text:?}")
    };
    Stream {
        attempts,
        open,
        failed: rejected + dropped,
        last_open,
        last_failed,
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
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

/// What the kernel and the daemons say, for a failure message.
fn diagnostics(service: &Service) -> String {
    let (_, text, _) = try_sh(&format!(
        "echo '== dockgated'; kill -0 {} && echo alive; \
         echo '== zones'; firewall-cmd --get-active-zones; \
         echo '== probe from the allowed source, and the iptables rules its packets hit'; \
         iptables-save -c > /tmp/counters-before; ip6tables-save -c >> /tmp/counters-before; \
         sandbox-ctl probe --from 10.99.1.50 {HOST_V4} 8080; \
         iptables-save -c > /tmp/counters-after; ip6tables-save -c >> /tmp/counters-after; \
         diff /tmp/counters-before /tmp/counters-after | grep '^>'; \
         echo '== docker ps'; timeout 5 docker ps --format '{{{{.Names}}}} {{{{.Status}}}}'; \
         for c in $(timeout 5 docker ps -q); do timeout 5 docker inspect -f \
           '{{{{.Name}}}} {{{{range .NetworkSettings.Networks}}}}{{{{.IPAddress}}}} {{{{end}}}}' $c; done; \
         echo '== docker0 ports and neighbours'; ip -br link show master docker0; ip neigh show dev docker0; \
         echo '== containerd tasks'; ctr --address /run/containerd/containerd.sock -n moby tasks ls; \
         echo '== conntrack to 8080'; grep -c 'dport=8080' /proc/net/nf_conntrack; grep 'dport=8080' /proc/net/nf_conntrack | grep -v TIME_WAIT | tail -n 5; \
         echo '== nat'; iptables -t nat -S PREROUTING; iptables -t nat -S DOCKER; \
         echo '== dockgate rules (mangle, filter)'; iptables-save -t mangle | grep -c dockgate; \
         iptables-save -t filter | grep dockgate; \
         echo '== FORWARD'; iptables -S FORWARD; iptables -S DOCKER; \
         echo '== firewalld FORWARD'; nft list chain inet firewalld filter_FORWARD 2>&1 | head -40; \
         echo '== routes'; ip -4 route; \
         echo '== dockgated log'; tail -n 25 {}; \
         echo '== dockerd log'; tail -n 15 /run/sandbox/logs/dockerd; \
         echo '== firewalld log'; tail -n 15 /run/sandbox/logs/firewalld",
        service.child.id(),
        service.dockgate.dir.join("dockgated.log").display()
    ));
    text
}

/// firewalld.conf's CleanupOnExit, as firewalld reports it (the sandbox's private copy).
fn cleanup_on_exit() -> String {
    busctl_string(&sh(
        "busctl --system get-property org.fedoraproject.FirewallD1 \
         /org/fedoraproject/FirewallD1/config org.fedoraproject.FirewallD1.config CleanupOnExit",
    ))
}

/// The text of a single string busctl printed (`s "internal"`).
fn busctl_string(output: &str) -> String {
    output
        .trim()
        .trim_start_matches("s ")
        .trim_matches('"')
        .to_owned()
}

/// The zone of an interface, asked over D-Bus directly (firewall-cmd starts Python: too slow
/// to time a correction with).
fn zone_now(interface: &str) -> String {
    let (_, stdout, _) = try_sh(&format!(
        "busctl --system call org.fedoraproject.FirewallD1 /org/fedoraproject/FirewallD1 \
         org.fedoraproject.FirewallD1.zone getZoneOfInterface s {interface}"
    ));
    busctl_string(&stdout)
}

/// When Docker last finished re-creating its rules after a firewalld reload (Docker 28 reports
/// it in `docker info`, to the second; Docker 20.10 reports nothing: None).
fn docker_reloaded_at() -> Option<String> {
    let (_, stdout, _) = try_sh("docker info --format '{{json .FirewallBackend}}'");
    let backend: serde_json::Value = serde_json::from_str(stdout.trim()).ok()?;
    backend["Info"]
        .as_array()?
        .iter()
        .find(|pair| pair[0] == "ReloadedAt")
        .and_then(|pair| pair[1].as_str())
        .map(str::to_owned)
}

fn docker_answers() -> bool {
    try_sh("curl -sf --max-time 1 --unix-socket /run/docker.sock http://docker/_ping").0
}

fn user_bridge(network: &str) -> String {
    format!(
        "br-{}",
        &sh(&format!(
            "docker network inspect -f '{{{{.Id}}}}' {network}"
        ))
        .trim()[..12]
    )
}

/// Issue 4: with `bind`, after dockerd restarts, docker0 and a user-defined bridge are back in
/// the bound zone. Prints the time from Docker answering again (it has put its bridges into
/// zone docker by then) to both bridges being back in the bound zone.
#[test]
fn with_bind_the_bridges_are_bound_again_right_after_docker_restarts() {
    in_sandbox();
    add_client_address(1, "10.99.1.50");
    let _ = try_sh("docker network rm dgbind");
    sh("docker network create dgbind >/dev/null");
    let user = user_bridge("dgbind");
    let web = Container::httpd(
        "bind-web",
        "-p 8080:80 --network dgbind --restart always --stop-timeout 1",
    );
    let service = Service::start(
        "bind-timing",
        "trusted = [\"10.99.1.50\"]\n[zone]\nbind = \"internal\"\n",
    );
    let bound = || zone_now("docker0") == "internal" && zone_now(&user) == "internal";
    assert!(
        eventually(Duration::from_secs(20), bound),
        "{}",
        service.log()
    );
    // The first start may have reloaded firewalld; let Docker rebuild before restarting it.
    std::thread::sleep(Duration::from_secs(3));

    let mut samples = Vec::new();
    for _ in 0..5 {
        sh("sandbox-ctl stop dockerd");
        assert!(
            eventually(Duration::from_secs(10), || zone_now("docker0") == "docker"),
            "bridges returned to zone docker when Docker stopped:\n{}",
            service.log()
        );
        let mut start = Command::new("sandbox-ctl")
            .args(["start", "dockerd"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let begun = Instant::now();
        while !docker_answers() {
            assert!(begun.elapsed() < Duration::from_secs(60), "dockerd came up");
            std::thread::sleep(Duration::from_millis(5));
        }
        let answered = Instant::now();
        while !bound() {
            assert!(
                answered.elapsed() < Duration::from_secs(10),
                "bridges bound again after Docker started:\n{}",
                service.log()
            );
        }
        samples.push(answered.elapsed());
        assert!(start.wait().unwrap().success());
    }
    samples.sort();
    eprintln!(
        "{}: Docker answering -> docker0 and {user} back in zone internal: {:?} (median {} ms)",
        stack(),
        samples
            .iter()
            .map(|sample| sample.as_millis())
            .collect::<Vec<_>>(),
        samples[samples.len() / 2].as_millis()
    );
    assert_eq!(
        probe_until_from("10.99.1.50", 8080, "open", Duration::from_secs(15)),
        "open",
        "the exposed port works in the bound zone"
    );
    drop(web);
    let _ = try_sh("docker network rm dgbind");
}

/// Issue 4: without docker.service's prestart, dockerd killed and started again at once races
/// dockgate returning the bridges to zone docker (Docker 20.10 refuses to start when a bridge
/// is bound elsewhere). Counts the clean starts out of twenty; every failed start must succeed
/// on a second try, once dockgate has returned the bridges.
/// A count, not a requirement, and 20 restarts take minutes: run by tests/bench/events only.
#[test]
#[ignore = "a benchmark: tests/bench/events runs it"]
fn back_to_back_dockerd_restarts_without_the_drop_in_are_counted() {
    in_sandbox();
    let service = Service::start(
        "race",
        "trusted = [\"10.99.1.50\"]\n[zone]\nbind = \"internal\"\n",
    );
    assert!(
        eventually(Duration::from_secs(20), || zone_now("docker0")
            == "internal"),
        "{}",
        service.log()
    );
    std::thread::sleep(Duration::from_secs(3));
    let mut clean = 0;
    for round in 0..20 {
        assert!(
            eventually(Duration::from_secs(15), || zone_now("docker0")
                == "internal"),
            "round {round}: docker0 bound before the kill:\n{}",
            service.log()
        );
        let (started, _, _) = try_sh("sandbox-ctl kill dockerd; sandbox-ctl start dockerd");
        if started {
            clean += 1;
        } else {
            let (again, _, stderr) = try_sh("sleep 1; sandbox-ctl start dockerd");
            assert!(
                again,
                "round {round}: dockerd did not start on a second try: {stderr}"
            );
        }
    }
    eprintln!(
        "{}: dockerd killed and started at once, without the prestart drop-in: {clean} of 20 started cleanly",
        stack()
    );
}

/// Issue 5's runtime exposures as the daemon keeps them (the D-Bus API will add them; here the
/// state file is written as the API would): they are in force after a start, one whose expiry
/// passed while dockgated was down is taken out at start, and a short one closes on time.
#[test]
fn runtime_exposures_survive_a_restart_and_expire_on_time_also_while_down() {
    in_sandbox();
    add_client_address(1, "10.99.1.50");
    add_client_address(1, "10.99.1.60");
    let _web = Container::httpd("rt-web", "-p 8080:80");
    let now = dockgate::exposures::unix_now();
    let ttl = 12;
    let exposures = format!(
        r#"{{"last_id":2,"exposures":[
            {{"id":"runtime-1","port":"8080/tcp","from":["10.99.1.60"],"owner_uid":1000,"expires_at":{}}},
            {{"id":"runtime-2","port":"8080/tcp","from":["10.99.1.2"],"owner_uid":0,"expires_at":{}}}]}}"#,
        now + ttl,
        now - 10
    );
    let mut service = Service::start_with_state(
        "runtime",
        "trusted = [\"10.99.1.50\"]\n",
        &[("exposures.json", exposures)],
    );
    service.wait_for_reconcile_after(0);
    service.allowed_and_denied("start");
    assert_eq!(
        probe_until_from("10.99.1.60", 8080, "open", Duration::from_secs(5)),
        "open",
        "the runtime exposure from the state file is in force:\n{}",
        service.log()
    );
    let file = service.dockgate.state_dir().join("exposures.json");
    let stored = std::fs::read_to_string(&file).unwrap();
    assert!(
        !stored.contains("runtime-2") && stored.contains("runtime-1"),
        "the exposure that expired while dockgated was down is gone: {stored}"
    );
    assert!(
        service.log().contains("exposure expired"),
        "{}",
        service.log()
    );

    // The short one closes on time, without any other event.
    let opened_until = now + ttl;
    assert!(
        eventually(Duration::from_secs(ttl + 10), || probe_from(
            "10.99.1.60",
            HOST_V4,
            8080
        ) == "dropped"),
        "the exposure did not close:\n{}",
        service.log()
    );
    let closed = dockgate::exposures::unix_now();
    eprintln!(
        "{}: a {ttl} s exposure was closed {} s after its expiry",
        stack(),
        closed.saturating_sub(opened_until)
    );
    assert!(closed + 1 >= opened_until, "closed before its time");
    let stored = std::fs::read_to_string(&file).unwrap();
    assert!(!stored.contains("runtime-1"), "{stored}");

    // A restart brings nothing back.
    let before = service.reconciles();
    service.restart();
    service.wait_for_reconcile_after(before);
    assert_eq!(probe_from("10.99.1.60", HOST_V4, 8080), "dropped");
    service.allowed_and_denied("after a restart");
}

/// The prefix that runs a command as `user`: nothing for root, setpriv (group nogroup, no
/// supplementary groups) for anyone else.
fn as_user(user: &str) -> String {
    if user == "root" {
        String::new()
    } else {
        format!("setpriv --reuid={user} --regid=65534 --clear-groups ")
    }
}

/// `busctl call` on dockgate's API, as `user` ("root" or an unprivileged one).
fn busctl(user: &str, arguments: &str) -> (bool, String, String) {
    try_sh(&format!(
        "{}busctl --system call {API} {arguments}",
        as_user(user)
    ))
}

/// Expose through dockgate's own D-Bus client, as root; the error as "name: message".
fn expose_with_client(port: &str, sources: &[String]) -> Result<String, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let bus = zbus::Connection::system().await.unwrap();
        let api = dockgate::api::Dockgate1Proxy::new(&bus).await.unwrap();
        let sources: Vec<&str> = sources.iter().map(String::as_str).collect();
        api.expose(port, &sources, 0, std::collections::HashMap::new())
            .await
            .map_err(|error| match error {
                zbus::Error::MethodError(name, message, _) => {
                    format!("{name}: {}", message.unwrap_or_default())
                }
                other => other.to_string(),
            })
    })
}

/// The D-Bus error name of a call with a simple signature (dbus-send prints it; busctl does not).
fn dbus_error(user: &str, method: &str, arguments: &str) -> String {
    let (_, _, stderr) = try_sh(&format!(
        "{}dbus-send --system --print-reply --dest=org.dockgate.Dockgate1 \
         /org/dockgate/Dockgate1 org.dockgate.Dockgate1.{method} {arguments}",
        as_user(user)
    ));
    stderr
}

fn exposure_ids(user: &str) -> Vec<String> {
    let (ok, stdout, stderr) = busctl(user, "ListExposures --json=short");
    assert!(ok, "ListExposures as {user}: {stderr}");
    let mut ids: Vec<String> = stdout
        .split("\"id\":{\"type\":\"s\",\"data\":\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// Permissions() as `user` sees it: "read=yes expose=auth admin=auth".
fn permissions(user: &str) -> String {
    let (ok, stdout, stderr) = busctl(user, "Permissions --json=short");
    assert!(ok, "Permissions as {user}: {stderr}");
    let answers: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    ["read", "expose", "admin"]
        .map(|action| {
            format!(
                "{action}={}",
                answers["data"][0][action].as_str().unwrap_or("(missing)")
            )
        })
        .join(" ")
}

/// Issue 5 over the real system bus with real polkitd: root exposes and unexposes a port and a
/// client sees it at once; config exposures are read-only; bad arguments change nothing; an
/// unprivileged caller is refused until a polkit rule lets it read, then expose.
#[test]
fn the_dbus_api_exposes_with_real_packets_and_asks_polkit_about_everyone_but_root() {
    in_sandbox();
    add_client_address(1, "10.99.1.50");
    let _web = Container::httpd("api-web", "-p 8080:80");
    let service = Service::start(
        "api",
        "trusted = [\"10.99.1.50\"]\n[[expose]]\nport = \"9999/tcp\"\nfrom = [\"any\"]\n",
    );
    service.wait_for_api();
    service.wait_until_settled();
    service.allowed_and_denied("start");

    // Expose returns once the rule is in the kernel: the very next probe gets through.
    let started = Instant::now();
    let (ok, stdout, stderr) = busctl("root", "Expose sasta{sv} 8080/tcp 1 10.99.1.2 0 0");
    let latency = started.elapsed();
    assert!(ok, "Expose: {stderr}\n{}", service.log());
    assert_eq!(stdout.trim(), "s \"runtime-1\"");
    assert_eq!(probe(HOST_V4, 8080), "open", "right after Expose returned");
    eprintln!(
        "{}: one Expose through busctl (process start included): {} ms",
        stack(),
        latency.as_millis()
    );
    assert_eq!(exposure_ids("root"), ["config-1", "runtime-1"]);

    // Bad arguments are refused with the field named, and change nothing: not the list, not
    // the state file, not a rule in the kernel.
    let state_file = service.dockgate.state_dir().join("exposures.json");
    let state_before = std::fs::read(&state_file).unwrap();
    let rules_before = [kernel_rules("iptables"), kernel_rules("ip6tables")];
    for (arguments, field) in [
        ("Expose sasta{sv} 80/icmp 1 10.99.1.2 0 0", "port"),
        ("Expose sasta{sv} 8080/tcp 0 0 0", "sources"),
        (
            "Expose sasta{sv} 8080/tcp 1 '10.0.0.1 -j ACCEPT' 0 0",
            "sources[0]",
        ),
        ("Expose sasta{sv} 8080/tcp 1 any 99999999 0", "ttl_seconds"),
        (
            "Expose sasta{sv} 8080/tcp 1 any 0 1 container u 7",
            "options.container",
        ),
        ("Expose sasta{sv} 8080/tcp 1 any 0 1 color s red", "options"),
        ("Expose sasta{sv} 70000/tcp 1 any 0 0", "port"),
        ("Expose sasta{sv} 9000-8000/tcp 1 any 0 0", "port"),
        ("Expose sasta{sv} 8080/tcp 1 300.1.2.3 0 0", "sources[0]"),
        (
            "Expose sasta{sv} 8080/tcp 2 10.0.0.1 10.0.0.9-10.0.0.1 0 0",
            "sources[1]",
        ),
        ("Expose sasta{sv} 8080/tcp 1 10.0.0.0/33 0 0", "sources[0]"),
    ] {
        let (ok, _, stderr) = busctl("root", arguments);
        assert!(!ok, "{arguments} was accepted");
        assert!(stderr.contains(field), "{arguments}: {stderr}");
    }
    // Too big for a command line (one argument may be 128 KiB): through dockgate's own client.
    let huge = "1".repeat(1 << 20);
    let many: Vec<String> = (0..10_000)
        .map(|n| format!("10.{}.{}.1", n / 256, n % 256))
        .collect();
    for (port, sources, field) in [
        ("8080/tcp", vec![huge.clone()], "sources[0]"),
        (huge.as_str(), vec!["any".to_owned()], "port"),
        ("8080/tcp", many, "sources"),
    ] {
        let error = expose_with_client(port, &sources).expect_err("accepted");
        assert!(
            error.contains("org.dockgate.Dockgate1.Error.InvalidArgument") && error.contains(field),
            "{field}: {}",
            &error[..error.len().min(300)]
        );
    }
    let wrong_signature = dbus_error("root", "Expose", "string:80/tcp");
    assert!(
        wrong_signature.contains("org.freedesktop.DBus.Error"),
        "{wrong_signature}"
    );
    assert_eq!(exposure_ids("root"), ["config-1", "runtime-1"]);
    assert_eq!(std::fs::read(&state_file).unwrap(), state_before);
    assert_eq!(
        [kernel_rules("iptables"), kernel_rules("ip6tables")],
        rules_before
    );
    assert!(
        dbus_error("root", "Unexpose", "string:config-1")
            .contains("org.dockgate.Dockgate1.Error.ReadOnly")
    );

    // Unexpose closes it again; a second time it is not found.
    let (ok, _, stderr) = busctl("root", "Unexpose s runtime-1");
    assert!(ok, "Unexpose: {stderr}");
    assert_eq!(
        probe(HOST_V4, 8080),
        "dropped",
        "right after Unexpose returned"
    );
    assert!(
        dbus_error("root", "Unexpose", "string:runtime-1")
            .contains("org.dockgate.Dockgate1.Error.NotFound")
    );

    // An unprivileged caller: polkit says no (no session, auth_admin) to everything, and
    // Permissions says so without trying.
    assert_eq!(permissions("root"), "read=yes expose=yes admin=yes");
    assert_eq!(permissions("nobody"), "read=auth expose=auth admin=auth");
    let refused = dbus_error("nobody", "ListExposures", "");
    assert!(
        refused.contains("org.dockgate.Dockgate1.Error.NotAuthorized")
            && refused.contains("org.dockgate.Dockgate1.read"),
        "{refused}"
    );
    let (ok, _, stderr) = busctl("nobody", "Expose sasta{sv} 8080/tcp 1 10.99.1.2 0 0");
    assert!(
        !ok && stderr.contains("org.dockgate.Dockgate1.expose"),
        "{stderr}"
    );

    // A rule lets nobody read: it can list, but still not expose.
    let rules = "/etc/polkit-1/rules.d/50-dockgate-test.rules";
    std::fs::write(
        rules,
        "polkit.addRule(function(action, subject) {\n\
           if (action.id == \"org.dockgate.Dockgate1.read\" && subject.user == \"nobody\")\n\
             return polkit.Result.YES;\n\
         });\n",
    )
    .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || busctl(
            "nobody",
            "ListExposures"
        )
        .0),
        "polkitd did not pick up the read rule"
    );
    assert_eq!(exposure_ids("nobody"), ["config-1"]);
    assert_eq!(permissions("nobody"), "read=yes expose=auth admin=auth");
    let (ok, _, _) = busctl("nobody", "Expose sasta{sv} 8080/tcp 1 10.99.1.2 0 0");
    assert!(!ok, "a read-only caller exposed a port");

    // The example rules file as shipped: nobody may expose once it is in group dockgate.
    std::fs::write(
        rules,
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/polkit/50-dockgate.rules.example"
        ))
        .unwrap(),
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let (ok, _, _) = busctl("nobody", "Expose sasta{sv} 8080/tcp 1 10.99.1.2 0 0");
    assert!(!ok, "nobody exposed before joining group dockgate");
    // The sandbox's /etc/group is a private copy.
    sh("grep -q '^dockgate:' /etc/group || echo 'dockgate:x:64999:nobody' >> /etc/group");
    assert!(
        eventually(Duration::from_secs(10), || {
            let (ok, stdout, _) = busctl("nobody", "Expose sasta{sv} 8080/tcp 1 10.99.1.2 0 0");
            ok && stdout.contains("runtime-")
        }),
        "nobody could not expose with the example rule after joining group dockgate:\n{}",
        service.log()
    );
    assert_eq!(permissions("nobody"), "read=yes expose=yes admin=auth");
    let answer = probe(HOST_V4, 8080);
    assert_eq!(
        answer,
        "open",
        "nobody's exposure is in force\n{}",
        diagnostics(&service)
    );
    assert!(
        service
            .log()
            .lines()
            .any(|line| line.contains("uid=65534 pid=")
                && line.contains("method=\"Expose\"")
                && line.contains("8080/tcp")),
        "the call is logged with the caller's uid, pid and arguments:\n{}",
        service.log()
    );
    std::fs::remove_file(rules).unwrap();
}

/// The `org.dockgate.Dockgate1` interface element of an introspection document, one tag per
/// line, so that layout does not count.
fn interface_element(xml: &str) -> Vec<String> {
    let start = xml
        .find("<interface name=\"org.dockgate.Dockgate1\">")
        .expect("the interface is in the document");
    let end = start + xml[start..].find("</interface>").expect("closed") + "</interface>".len();
    xml[start..end]
        .split('<')
        .map(str::trim)
        .filter(|part| !part.is_empty() && !part.starts_with("!--"))
        .map(|part| format!("<{part}"))
        .collect()
}

#[test]
fn the_interface_xml_file_is_what_dockgated_serves() {
    in_sandbox();
    let service = Service::start("xml", "");
    service.wait_for_api();
    let live = sh(
        "busctl --system introspect --xml-interface org.dockgate.Dockgate1 /org/dockgate/Dockgate1",
    );
    let file = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/dbus/org.dockgate.Dockgate1.xml"
    ))
    .unwrap();
    assert_eq!(interface_element(&file), interface_element(&live), "{live}");
}

/// The signals on dockgate's object path, as dbus-monitor prints them; stopped when dropped.
struct SignalMonitor {
    child: std::process::Child,
    output: std::path::PathBuf,
}

impl SignalMonitor {
    /// Returns once the monitor sees signals: it waits for one it emits itself.
    fn start(name: &str) -> Self {
        let output = std::env::temp_dir().join(format!("dockgate-test-{}-{name}.monitor", stack()));
        let child = std::process::Command::new("dbus-monitor")
            .args(["--system", "type='signal',path='/org/dockgate/Dockgate1'"])
            .stdout(std::fs::File::create(&output).unwrap())
            .spawn()
            .unwrap();
        let monitor = SignalMonitor { child, output };
        assert!(
            eventually(Duration::from_secs(10), || {
                sh("busctl --system emit /org/dockgate/Dockgate1 org.dockgate.Test Ready");
                monitor.text().contains("member=Ready")
            }),
            "dbus-monitor saw nothing"
        );
        monitor
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.output).unwrap_or_default()
    }

    /// Each signal seen: its member and its body, in order.
    fn signals(&self) -> Vec<(String, String)> {
        self.text()
            .split("\nsignal ")
            .filter_map(|message| {
                let (header, body) = message.split_once('\n').unwrap_or((message, ""));
                let member = header.split("member=").nth(1)?;
                Some((member.trim().to_owned(), body.to_owned()))
            })
            .collect()
    }

    /// The names of the properties announced in PropertiesChanged signals.
    fn changed_properties(signals: &[(String, String)]) -> Vec<String> {
        signals
            .iter()
            .filter(|(member, _)| member == "PropertiesChanged")
            .flat_map(|(_, body)| {
                body.split("dict entry(")
                    .skip(1)
                    .filter_map(|entry| entry.split('"').nth(1).map(str::to_owned))
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

impl Drop for SignalMonitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.output);
    }
}

/// What a GUI that listens sees: ExposuresChanged and Reconciled for a change, and
/// PropertiesChanged for exactly the properties whose value changed.
#[test]
fn changes_are_announced_with_signals_and_only_changed_properties() {
    in_sandbox();
    let _web = Container::httpd("sig-web", "-p 8080:80");
    let service = Service::start("signals", "");
    service.wait_for_api();
    service.wait_until_settled();
    let monitor = SignalMonitor::start("signals");

    let (ok, _, stderr) = busctl("root", "Expose sasta{sv} 8080/tcp 1 10.99.1.2 0 0");
    assert!(ok, "Expose: {stderr}");
    // Read as soon as Expose answered: RuleCount already counts the new rule.
    let rules = sh(&format!("busctl --system get-property {API} RuleCount"));
    let rules = rules.trim().trim_start_matches("u ").to_owned();
    assert!(
        eventually(Duration::from_secs(5), || {
            let signals = monitor.signals();
            signals
                .iter()
                .any(|(member, _)| member == "ExposuresChanged")
                && SignalMonitor::changed_properties(&signals).contains(&"RuleCount".to_owned())
        }),
        "{}",
        monitor.text()
    );
    let signals = monitor.signals();
    let (_, reconciled) = signals
        .iter()
        .find(|(member, _)| member == "Reconciled")
        .unwrap_or_else(|| panic!("no Reconciled:\n{}", monitor.text()));
    assert!(
        reconciled.contains("string \"Expose runtime-1 by uid 0\"")
            && reconciled.contains(&format!("uint32 {rules}"))
            && reconciled.contains("uint64 "),
        "Reconciled(trigger, rules, duration_us): {reconciled}"
    );
    let mut changed = SignalMonitor::changed_properties(&signals);
    changed.sort();
    assert_eq!(
        changed,
        ["LastReconcile", "RuleCount"],
        "{}",
        monitor.text()
    );

    // A new config with another default: Default is announced, with its new value.
    let seen = signals.len();
    std::fs::write(
        service.dockgate.dir.join("dockgate.toml"),
        "default = \"allow\"\n",
    )
    .unwrap();
    let (ok, _, stderr) = dockgatectl("reload");
    assert!(ok, "{stderr}");
    assert!(
        eventually(Duration::from_secs(5), || monitor.signals()[seen..]
            .iter()
            .any(|(member, body)| member == "PropertiesChanged"
                && body.contains("string \"Default\"")
                && body.contains("string \"allow\""))),
        "{}",
        monitor.text()
    );

    // A container that starts changes no rule, but it is a new published port: PortsChanged,
    // and ListPorts has it by then.
    let seen = monitor.signals().len();
    let _db = Container::httpd("sig-db", "-p 8081:80");
    assert!(
        eventually(Duration::from_secs(5), || monitor.signals()[seen..]
            .iter()
            .any(|(member, _)| member == "PortsChanged")),
        "no PortsChanged for a new container:\n{}",
        monitor.text()
    );
    let (ok, ports, stderr) = busctl("root", "ListPorts --json=short");
    assert!(ok && ports.contains("sig-db"), "{stderr}{ports}");
}

fn dockgatectl(arguments: &str) -> (bool, String, String) {
    try_sh(&format!("{DOCKGATECTL} {arguments}"))
}

/// Every dockgatectl command against the running daemon, as root and as an unprivileged user.
#[test]
fn dockgatectl_drives_every_command_over_the_bus() {
    in_sandbox();
    add_client_address(1, "10.99.1.50");
    let _web = Container::httpd("ctl-web", "-p 8080:80");
    let _local = Container::httpd("ctl-local", "-p 127.0.0.1:9999:80");
    let service = Service::start(
        "ctl",
        "trusted = [\"10.99.1.50\"]\n[[expose]]\nport = \"9999/tcp\"\nfrom = [\"any\"]\n",
    );
    assert!(
        eventually(Duration::from_secs(20), || dockgatectl("status").0),
        "{}",
        service.log()
    );
    service.wait_until_settled();
    service.allowed_and_denied("start");

    let (_, status, _) = dockgatectl("status");
    assert!(
        status.contains("firewalld:  connected") && status.contains("default deny"),
        "{status}"
    );
    let (ok, json, _) = dockgatectl("status --json");
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(ok && json["rule_count"].as_u64().unwrap() > 0, "{json}");

    let (ok, ports, stderr) = dockgatectl("ports");
    assert!(ok, "{stderr}");
    let line = ports
        .lines()
        .find(|line| line.contains("ctl-web"))
        .unwrap_or_else(|| panic!("{ports}"));
    assert!(
        line.contains("8080") && line.contains("trusted-only"),
        "{ports}"
    );
    // 9999 is exposed to any source, but bound to loopback: nobody else can reach it.
    let line = ports
        .lines()
        .find(|line| line.contains("ctl-local"))
        .unwrap_or_else(|| panic!("{ports}"));
    assert!(line.contains("loopback only"), "{ports}");
    let (_, ports, _) = dockgatectl("ports --json");
    let ports: serde_json::Value = serde_json::from_str(&ports).unwrap();
    let local = ports
        .as_array()
        .unwrap()
        .iter()
        .find(|port| port["container"] == "ctl-local")
        .unwrap_or_else(|| panic!("{ports}"));
    assert!(
        local["state"] == "denied" && local["loopback_only"] == true,
        "{local}"
    );

    let (ok, id, stderr) =
        dockgatectl("expose 8080/tcp --from 10.99.1.2 --for 1h --comment 'for the test'");
    assert!(ok, "{stderr}");
    let id = id.trim().to_owned();
    assert_eq!(probe(HOST_V4, 8080), "open", "right after expose returned");
    let (_, list, _) = dockgatectl("list");
    let line = list
        .lines()
        .find(|line| line.trim_start().starts_with(&id))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(
        line.contains("10.99.1.2") && (line.contains("in 1h") || line.contains("in 59m")),
        "{list}"
    );
    let (_, list, _) = dockgatectl("list --json");
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    let (_, ports, _) = dockgatectl("ports");
    assert!(ports.contains("exposed"), "{ports}");

    let (_, why, _) = dockgatectl("explain 10.99.1.2 8080/tcp");
    assert_eq!(why.trim(), format!("allowed: exposure {id}"));
    let (_, why, _) = dockgatectl("explain 10.99.1.50 8080/tcp");
    assert!(why.starts_with("allowed: trusted source"), "{why}");
    let (_, why, _) = dockgatectl("explain 10.99.1.3 8080/tcp");
    assert!(why.starts_with("denied:"), "{why}");
    // 9999 is exposed to any source but published on loopback only, and packets agree.
    let (_, why, _) = dockgatectl("explain 10.99.1.2 9999/tcp");
    assert!(
        why.starts_with("denied: 9999/tcp is published on 127.0.0.1 only"),
        "{why}"
    );
    assert_ne!(probe(HOST_V4, 9999), "open");

    let (ok, _, stderr) = dockgatectl(&format!("unexpose {id}"));
    assert!(ok, "{stderr}");
    assert_eq!(
        probe(HOST_V4, 8080),
        "dropped",
        "right after unexpose returned"
    );
    let (ok, _, stderr) = dockgatectl(&format!("unexpose {id}"));
    assert!(!ok);
    assert_eq!(
        stderr.trim(),
        format!("dockgatectl: NotFound: no exposure {id}")
    );
    let (ok, _, stderr) = dockgatectl("unexpose config-1");
    assert!(
        !ok && stderr.starts_with("dockgatectl: ReadOnly: config-1"),
        "{stderr}"
    );
    let (ok, _, stderr) = dockgatectl("expose 80/icmp --from any");
    assert!(
        !ok && stderr.starts_with("dockgatectl: InvalidArgument: port"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");

    let (ok, _, stderr) = dockgatectl("reconcile");
    assert!(ok, "{stderr}");
    let config = service.dockgate.dir.join("dockgate.toml");
    let good = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, "verdict = \"maybe\"\n").unwrap();
    let (ok, _, stderr) = dockgatectl("reload");
    assert!(
        !ok && stderr.contains("dockgate.toml:1: verdict"),
        "{stderr}"
    );
    std::fs::write(&config, good).unwrap();
    let (ok, _, stderr) = dockgatectl("reload");
    assert!(ok, "{stderr}");

    let (ok, _, stderr) = try_sh(&format!(
        "{}{DOCKGATECTL} expose 8080/tcp --from any",
        as_user("nobody")
    ));
    assert!(
        !ok && stderr.starts_with("dockgatectl: NotAuthorized:"),
        "{stderr}"
    );

    let mut service = service;
    service.signal("TERM");
    let _ = service.child.wait();
    let (ok, _, stderr) = dockgatectl("status");
    assert!(
        !ok && stderr.contains("dockgated is not running"),
        "{stderr}"
    );
}

/// Issue 5: 50 callers at once, each exposing its own port, end with all 50 in place, each rule
/// once, and nothing left for a re-apply to do.
#[test]
fn fifty_parallel_exposes_all_land_once() {
    in_sandbox();
    let service = Service::start("parallel", "trusted = [\"10.99.1.50\"]\n");
    service.wait_for_api();
    service.wait_for_reconcile_after(0);
    let (ok, _, stderr) = try_sh(&format!(
        "for i in $(seq 1 50); do \
           busctl --system call {API} Expose sasta{{sv}} $((20000+i))/tcp 1 203.0.113.$i 0 0 \
             >/dev/null || echo failed $i >&2 & \
         done; wait"
    ));
    assert!(ok && stderr.is_empty(), "{stderr}\n{}", service.log());
    let ids = exposure_ids("root");
    assert_eq!(ids.len(), 50, "{ids:?}");
    for family in ["iptables", "ip6tables"] {
        let rules: Vec<String> = sh(&format!("{family}-save -t mangle"))
            .lines()
            .filter(|line| line.contains("dockgate:expose:runtime-"))
            .map(str::to_owned)
            .collect();
        let unique: std::collections::BTreeSet<&String> = rules.iter().collect();
        assert_eq!(rules.len(), unique.len(), "{family}: duplicate rules");
        if family == "iptables" {
            assert_eq!(rules.len(), 50, "{family}: one rule per exposure");
        }
    }
    assert_eq!(service.dockgate.reapply_writes(), 0);
}

/// Issue 5: a 60-second exposure made over the API opens the port and closes it when it
/// expires, and not before.
#[test]
fn a_sixty_second_exposure_opens_and_closes_on_time() {
    in_sandbox();
    let _web = Container::httpd("ttl-web", "-p 8080:80");
    let service = Service::start("ttl", "trusted = [\"10.99.1.50\"]\n");
    assert!(
        eventually(Duration::from_secs(20), || dockgatectl("status").0),
        "{}",
        service.log()
    );
    service.wait_until_settled();
    assert_eq!(
        probe_until(HOST_V4, 8080, "dropped", Duration::from_secs(10)),
        "dropped"
    );
    let (ok, _, stderr) = dockgatectl("expose 8080/tcp --from 10.99.1.2 --for 60s");
    let exposed = Instant::now();
    assert!(ok, "{stderr}");
    assert_eq!(probe(HOST_V4, 8080), "open", "right after expose");
    while probe(HOST_V4, 8080) == "open" {
        assert!(
            exposed.elapsed() < Duration::from_secs(75),
            "still open after 75 s:\n{}",
            service.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let closed_after = exposed.elapsed();
    eprintln!(
        "{}: a 60 s exposure closed after {:.1} s",
        stack(),
        closed_after.as_secs_f64()
    );
    // Expiry has one-second resolution: it may close up to a second early.
    assert!(
        closed_after >= Duration::from_secs(59),
        "closed after {closed_after:?}"
    );
    assert_eq!(dockgatectl("list --json").1.matches("runtime-").count(), 0);
}

/// Runs `command` in a new terminal (script(1) gives it a pty as its controlling terminal) and
/// types `answer` once `prompt` appears in what it prints. Returns whether it succeeded, and
/// everything it printed.
fn in_terminal(command: &str, prompt: &str, answer: &str) -> (bool, String) {
    use std::io::{Read, Write};
    let mut child = Command::new("script")
        .args(["--quiet", "--return", "--command", command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let printed = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut stdout = child.stdout.take().unwrap();
    let reader = {
        let printed = printed.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n @ 1..) = stdout.read(&mut buffer) {
                printed
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        })
    };
    let mut stdin = child.stdin.take().unwrap();
    let started = Instant::now();
    let mut answered = false;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(30) {
            child.kill().unwrap();
            break child.wait().unwrap();
        }
        if !answered && printed.lock().unwrap().contains(prompt) {
            stdin.write_all(format!("{answer}\n").as_bytes()).unwrap();
            answered = true;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(stdin);
    reader.join().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let printed = printed.lock().unwrap().clone();
    (status.success(), printed + &stderr)
}

/// Issue 5: where polkit wants a password (here auth_self for one user), dockgatectl run in a
/// terminal asks for it through pkttyagent, and the exposure is made once it is given. Without
/// a terminal nobody could answer, so polkit refuses at once.
#[test]
fn dockgatectl_asks_for_the_password_in_a_terminal() {
    in_sandbox();
    let _web = Container::httpd("tty-web", "-p 8080:80");
    let service = Service::start("tty", "trusted = [\"10.99.1.50\"]\n");
    service.wait_for_api();
    service.wait_until_settled();
    assert_eq!(
        probe_until(HOST_V4, 8080, "dropped", Duration::from_secs(10)),
        "dropped"
    );

    // A user with a password, in the sandbox's private /etc/passwd and /etc/shadow. The hash
    // is `openssl passwd -6 -salt dockgatetest sesame-dockgate`.
    const PASSWORD: &str = "sesame-dockgate";
    sh("grep -q '^dgtest:' /etc/passwd || { \
          echo 'dgtest:x:64998:65534:dockgate test:/nonexistent:/usr/sbin/nologin' >> /etc/passwd; \
          echo 'dgtest:$6$dockgatetest$G2tY5KVQrahn/e1f2InaviaPO8OBfvMqztfGnIE9vwVLnXT529eLPmAVPq3tIlKajY6U71BhjcU606Ush2SQI0:20000:0:99999:7:::' >> /etc/shadow; }");
    let rules = "/etc/polkit-1/rules.d/50-dockgate-tty-test.rules";
    std::fs::write(
        rules,
        "polkit.addRule(function(action, subject) {\n\
           if (action.id.indexOf(\"org.dockgate.Dockgate1.\") == 0 && subject.user == \"dgtest\")\n\
             return polkit.Result.AUTH_SELF;\n\
         });\n",
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let as_dgtest = "setpriv --reuid=dgtest --regid=65534 --clear-groups";
    let expose = format!("{as_dgtest} {DOCKGATECTL} expose 8080/tcp --from 10.99.1.2");

    let started = Instant::now();
    let (ok, _, stderr) = try_sh(&format!("{expose} </dev/null"));
    assert!(
        !ok && stderr.contains("NotAuthorized") && started.elapsed() < Duration::from_secs(10),
        "without a terminal: {stderr}"
    );

    // The prompt comes, and a wrong password is refused.
    let (ok, printed) = in_terminal(&expose, "Password:", "not-the-password");
    assert!(
        !ok && printed.contains("AUTHENTICATING FOR org.dockgate.Dockgate1.expose")
            && printed.contains("NotAuthorized"),
        "a wrong password: {printed}"
    );
    assert_eq!(probe(HOST_V4, 8080), "dropped", "after a wrong password");

    let (ok, printed) = in_terminal(&expose, "Password:", PASSWORD);
    assert!(
        ok && printed.contains("AUTHENTICATING FOR org.dockgate.Dockgate1.expose")
            && printed.contains("runtime-"),
        "{printed}\n{}",
        service.log()
    );
    assert_eq!(probe(HOST_V4, 8080), "open", "after the password was given");
    assert!(
        service
            .log()
            .lines()
            .any(|line| line.contains("uid=64998") && line.contains("method=\"Expose\"")),
        "{}",
        service.log()
    );
    std::fs::remove_file(rules).unwrap();
}
