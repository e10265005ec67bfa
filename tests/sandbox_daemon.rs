//! The long-running dockgated against real firewalld and Docker restarts, reloads and signals,
//! judged by real packets.
#![cfg(feature = "sandbox-tests")]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

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
        firewalld_version().0 < 2,
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
    let before = service.reconciles_for("config reloaded");
    service.signal("HUP");
    service.wait_for_reconcile_for("config reloaded", before);
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
    let before = service.reconciles_for("config reloaded");
    service.signal("HUP");
    service.wait_for_reconcile_for("config reloaded", before);
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

/// Packets that dockgate's TCP-reset rules in filter (FORWARD and DOCKER-USER, both families)
/// have refused so far.
fn resets_sent() -> u64 {
    sh("iptables-save -c -t filter; ip6tables-save -c -t filter")
        .lines()
        .filter(|line| line.contains("dockgate:verdict") && line.contains("tcp-reset"))
        .filter_map(|line| {
            let counters = line.strip_prefix('[')?.split(']').next()?;
            counters.split(':').next()?.parse::<u64>().ok()
        })
        .sum()
}

/// With `verdict = "reject"` a denied TCP client is refused with a reset, not left to time
/// out, also after what reorders filter FORWARD: a firewalld reload (Docker 20.10 then puts its
/// jump to DOCKER-USER behind its own ACCEPTs), a firewalld restart and a dockerd restart.
#[test]
fn with_reject_a_denied_client_gets_a_reset_after_reloads_and_restarts() {
    in_sandbox();
    add_client_address(1, "10.99.1.50");
    let _web = Container::httpd("rej-web", "-p 8080:80 --restart always --stop-timeout 1");
    let service = Service::start(
        "reject",
        "trusted = [\"10.99.1.50\"]\nverdict = \"reject\"\n",
    );
    service.wait_for_reconcile_after(0);
    for event in [
        "start",
        "firewall-cmd --reload",
        "firewalld restart",
        "dockerd restart",
    ] {
        let rebuilt = service.reconciles_for("after Docker's rebuild");
        let started = Instant::now();
        match event {
            "start" => {}
            "firewall-cmd --reload" => drop(sh("firewall-cmd --reload")),
            "firewalld restart" => drop(sh("sandbox-ctl restart firewalld")),
            "dockerd restart" => drop(sh("sandbox-ctl restart dockerd")),
            _ => unreachable!(),
        }
        // Docker rebuilds its rules after firewalld's reload or start (the first start makes
        // one too); dockgate puts the reject back in front once that is over.
        if event != "dockerd restart" {
            service.wait_for_reconcile_for("after Docker's rebuild", rebuilt);
        }
        for (host, family) in [(HOST_V4, "IPv4"), (HOST_V6, "IPv6")] {
            let refused = eventually(Duration::from_secs(10), || {
                let before = resets_sent();
                probe(host, 8080) == "rejected" && resets_sent() > before
            });
            assert!(
                refused,
                "{event}: the denied client was not refused with a reset over {family}:\n{}\n{}\n{}",
                sh("iptables -S FORWARD"),
                sh("ip6tables -S FORWARD"),
                service.log()
            );
        }
        eprintln!(
            "{}: {event}: refused with a reset (IPv4 and IPv6) {} ms after it",
            stack(),
            started.elapsed().as_millis()
        );
        assert_eq!(
            probe_until_from("10.99.1.50", 8080, "open", Duration::from_secs(15)),
            "open",
            "{event}: the trusted source"
        );
    }
}

/// With `bind`, the bridges go to the bound zone once, after the reload that dockgate's first
/// start makes (CleanupOnExit), and stay there: sampled every 50 ms for 10 s from the start.
#[test]
fn with_bind_the_bridges_stay_in_the_bound_zone_from_the_first_moment_they_are_there() {
    in_sandbox();
    let _web = Container::httpd("flap-web", "-p 8080:80");
    // As on a host where dockgate has not run yet: CleanupOnExit as firewalld ships it, so the
    // first start must reload.
    assert_eq!(
        cleanup_on_exit(),
        "yes",
        "a previous test left CleanupOnExit set"
    );
    let service = Service::start(
        "flap",
        "trusted = [\"10.99.1.50\"]\n[zone]\nbind = \"internal\"\n",
    );
    let started = Instant::now();
    let mut samples = Vec::new();
    while started.elapsed() < Duration::from_secs(10) {
        samples.push((started.elapsed().as_millis(), zone_now("docker0")));
        std::thread::sleep(Duration::from_millis(50));
    }
    let first = samples
        .iter()
        .position(|(_, zone)| zone == "internal")
        .unwrap_or_else(|| panic!("never bound: {samples:?}\n{}", service.log()));
    let left: Vec<&(u128, String)> = samples[first..]
        .iter()
        .filter(|(_, zone)| zone != "internal")
        .collect();
    assert!(
        left.is_empty(),
        "docker0 left zone internal after {} ms: {left:?}\n{}",
        samples[first].0,
        service.log()
    );
    eprintln!(
        "{}: docker0 bound {} ms after the start and stayed ({} samples)",
        stack(),
        samples[first].0,
        samples.len()
    );
    assert!(service.log().contains("reloaded=true"), "{}", service.log());
}
