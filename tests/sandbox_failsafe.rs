//! The fail-safe promises of SPEC §3, each tried as the fault or the hostile local user it
//! guards against, with real daemons and real packets: Docker's API gone or hung, dockgated
//! stopped, a full or read-only state dir, a colleague with only `expose`, direct routing.
#![cfg(feature = "sandbox-tests")]

mod common;

use std::time::Duration;

use common::*;

const TRUSTED: &str = "10.99.1.50";
/// client1's own address: neither trusted nor exposed.
const DENIED: &str = "10.99.1.2";

/// Issue 18, finding 1: with dockerd stopped (live-restore keeps its containers and DNAT) or
/// frozen, what is judged does not shrink: a network whose bridge has a name of its own
/// (`com.docker.network.bridge.name`), which no pattern of Docker's own names covers, stays
/// behind the policy. Before, 808 of 1000 denied attempts got through in the 10 s after
/// dockerd stopped.
#[test]
fn a_custom_bridge_stays_judged_while_dockerd_is_stopped_or_frozen() {
    in_sandbox();
    add_client_address(1, TRUSTED);
    let _live_restore = DockerdArgs::set("--live-restore");
    let _network = DockerNetwork::create(
        "appnet",
        "-o com.docker.network.bridge.name=appnet0 --subnet 172.31.81.0/24",
    );
    let _app = Container::httpd("failsafe-app", "--network appnet -p 8181:80");
    let service = Service::start(
        "failsafe-docker",
        &format!("default = \"deny\"\ntrusted = [\"{TRUSTED}\"]\n"),
    );
    service.wait_until_settled();
    assert_eq!(
        probe_until_from(TRUSTED, 8181, "open", Duration::from_secs(10)),
        "open"
    );
    assert_eq!(probe(HOST_V4, 8181), "dropped");

    // dockerd stopped for 10 s: its event stream ends, dockgated reconciles without it.
    let denied = start_stream_to(8181, 100, DENIED, 12);
    let allowed = start_stream_to(8181, 10, TRUSTED, 12);
    std::thread::sleep(Duration::from_secs(1));
    sh("sandbox-ctl stop dockerd");
    std::thread::sleep(Duration::from_secs(10));
    let (denied, allowed) = (finish_stream(denied), finish_stream(allowed));
    let log = service.log();
    assert!(
        log.contains("Docker is not reachable"),
        "dockgated reconciled while Docker was away:\n{log}"
    );
    eprintln!("dockerd stopped: denied {denied:?}, allowed {allowed:?}");
    assert!(denied.attempts >= 1000, "{denied:?}");
    assert_eq!(denied.open, 0, "denied attempts got through: {denied:?}");
    assert!(
        allowed.open >= allowed.attempts * 9 / 10,
        "the container served all along (live-restore): {allowed:?}"
    );

    // dockerd frozen across a firewalld reload: the reconcile after the reload waits for
    // Docker's answer (up to 10 s), then judges without it.
    sh("sandbox-ctl start dockerd");
    assert_eq!(
        probe_until_from(TRUSTED, 8181, "open", Duration::from_secs(15)),
        "open"
    );
    let reloads = service.reconciles_for("firewalld reloaded");
    let pid = sh("sandbox-ctl pid dockerd").trim().to_owned();
    sh(&format!("kill -STOP {pid}"));
    let denied = start_stream_to(8181, 60, DENIED, 20);
    std::thread::sleep(Duration::from_secs(1));
    sh("firewall-cmd --reload");
    service.wait_for_reconcile_for("firewalld reloaded", reloads);
    let denied = finish_stream(denied);
    sh(&format!("kill -CONT {pid}"));
    eprintln!("dockerd frozen across a reload: denied {denied:?}");
    assert!(denied.attempts >= 1000, "{denied:?}");
    assert_eq!(denied.open, 0, "denied attempts got through: {denied:?}");
    let log = service.log();
    assert!(
        log.matches("Docker is not reachable").count() >= 2,
        "the reconcile after the reload went without Docker:\n{log}"
    );
}

/// The Unix second an exposure of `dockgatectl list --json` ends.
fn expires_at(id: &str) -> u64 {
    let listed: serde_json::Value =
        serde_json::from_str(&sh(&format!("{DOCKGATECTL} --json list"))).unwrap();
    listed
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["id"] == id)
        .and_then(|entry| entry["expires_at"].as_u64())
        .unwrap_or_else(|| panic!("{id} is not listed: {listed}"))
}

/// Sleeps until the wall clock reaches `unix` (seconds).
fn sleep_until_unix(unix: f64) {
    let left = unix - unix_now();
    if left > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(left));
    }
}

/// Issue 18, finding 2: a time-limited exposure stops admitting at its TTL with dockgated
/// stopped, also when firewalld reloads and restarts meanwhile (the rules carry their end, and
/// firewalld's permanent layer gives it back with them).
#[test]
fn a_time_limited_exposure_ends_on_time_while_dockgated_is_stopped() {
    in_sandbox();
    add_client_address(1, TRUSTED);
    let _web = Container::httpd("failsafe-ttl", "-p 8080:80");
    let mut service = Service::start(
        "failsafe-ttl",
        &format!("default = \"deny\"\ntrusted = [\"{TRUSTED}\"]\n"),
    );
    service.wait_until_settled();
    service.wait_for_api();
    assert_eq!(probe(HOST_V4, 8080), "dropped");
    let id = sh(&format!(
        "{DOCKGATECTL} expose 8080/tcp --from {DENIED} --for 15s"
    ))
    .trim()
    .to_owned();
    let ends = expires_at(&id) as f64;
    assert_eq!(probe(HOST_V4, 8080), "open");
    service.signal("TERM");
    let _ = service.child.wait();

    // The trusted source gets in once Docker has rebuilt its rules after each event.
    let docker_rebuilt = || {
        assert_eq!(
            probe_until_from(TRUSTED, 8080, "open", Duration::from_secs(10)),
            "open"
        )
    };
    sh("firewall-cmd --reload");
    docker_rebuilt();
    sh("sandbox-ctl restart firewalld");
    docker_rebuilt();
    assert_eq!(
        probe(HOST_V4, 8080),
        "open",
        "still admitted before its end, after a reload and a restart"
    );
    assert!(unix_now() < ends - 1.0, "the events took too long to tell");
    sleep_until_unix(ends + 1.0);
    assert_eq!(
        probe(HOST_V4, 8080),
        "dropped",
        "refused from 1 s after its end, with dockgated stopped"
    );
    sh("firewall-cmd --reload");
    docker_rebuilt();
    assert_eq!(probe(HOST_V4, 8080), "dropped", "and after one more reload");
    // Started again, it takes the exposure out of the rules and of the state file.
    service.child = Service::spawn(&service.dockgate);
    service.wait_for_api();
    assert!(
        eventually(Duration::from_secs(10), || !sh(&format!(
            "cat {}/exposures.json",
            service.dockgate.state_dir().display()
        ))
        .contains(&id)),
        "{id} is still in the state file"
    );
}

/// A state dir that takes no write (read-only, or full) does not keep an expired exposure
/// admitting, nor make dockgated reconcile over and over.
#[test]
fn a_time_limited_exposure_ends_on_time_with_a_read_only_state_dir() {
    in_sandbox();
    let _web = Container::httpd("failsafe-ro", "-p 8080:80");
    let service = Service::start("failsafe-ro", "default = \"deny\"\n");
    service.wait_until_settled();
    service.wait_for_api();
    let id = sh(&format!(
        "{DOCKGATECTL} expose 8080/tcp --from {DENIED} --for 15s"
    ))
    .trim()
    .to_owned();
    let ends = expires_at(&id) as f64;
    assert_eq!(probe(HOST_V4, 8080), "open");
    let state = service.dockgate.state_dir().display().to_string();
    let read_only = ReadOnly::mount(&state);
    assert!(
        !try_sh(&format!("touch {state}/probe")).0,
        "the state dir is read-only"
    );
    sleep_until_unix(ends + 1.0);
    assert_eq!(
        probe(HOST_V4, 8080),
        "dropped",
        "refused from 1 s after its end"
    );
    let reconciles = service.reconciles();
    std::thread::sleep(Duration::from_secs(8));
    let log = service.log();
    assert!(
        log.contains("cannot take expired exposures out of the state file"),
        "{log}"
    );
    assert!(
        service.reconciles() <= reconciles + 1,
        "no reconcile loop: {} reconciles in 8 s\n{log}",
        service.reconciles() - reconciles
    );
    assert!(
        !sh(&format!("{DOCKGATECTL} list")).contains(&id),
        "not listed once it has ended"
    );
    assert_eq!(probe(HOST_V4, 8080), "dropped");
    drop(read_only);
}

/// A directory made read-only by a bind mount over itself, until dropped.
struct ReadOnly(String);

impl ReadOnly {
    fn mount(path: &str) -> ReadOnly {
        sh(&format!(
            "mount --bind {path} {path} && mount -o remount,bind,ro {path}"
        ));
        ReadOnly(path.to_owned())
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let _ = try_sh(&format!("umount {}", self.0));
    }
}

/// Two users allowed to expose (group dockgate, the shipped example rule) and an admin-less
/// polkit: the setting of issue 18's findings 3 and 4.
fn colleagues() -> (TestUser, TestUser, PolkitRules) {
    let alice = TestUser::add("dgo-alice", 64101, &["dockgate"]);
    let mallory = TestUser::add("dgo-mallory", 64105, &["dockgate"]);
    let rules = PolkitRules::example("50-dockgate.rules.example");
    for user in [&alice, &mallory] {
        assert!(
            eventually(Duration::from_secs(10), || permissions(&user.name)
                == "read=yes expose=yes admin=auth"),
            "polkitd did not pick up the rules for {}: {}\n{}",
            user.name,
            permissions(&user.name),
            sh("grep -n dockgate /etc/group; ls -l /etc/polkit-1/rules.d")
        );
    }
    (alice, mallory, rules)
}

/// Issue 18, finding 3: a colleague with only `expose` loops Unexpose on the next id (ids are
/// sequential and visible to anyone with `read`) while Alice exposes. Before, one round in
/// five removed Alice's fresh exposure: the owner was checked on a published copy that did
/// not have it yet.
#[test]
fn a_colleague_looping_unexpose_on_the_next_id_removes_nothing_of_anothers() {
    in_sandbox();
    let _web = Container::httpd("failsafe-race", "-p 8080:80");
    let service = Service::start("failsafe-race", "default = \"deny\"\n");
    service.wait_for_api();
    service.wait_until_settled();
    let (alice, mallory, _rules) = colleagues();
    let stop = service.dockgate.dir.join("stop-looping");
    let mut tries = 0;
    for round in 1..=20 {
        let next = format!("runtime-{round}");
        let _ = std::fs::remove_file(&stop);
        let looper = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!(
                "n=0; while [ ! -e {stop} ]; do \
                   {as_mallory}busctl --system call {API} Unexpose s {next} >/dev/null 2>&1 \
                     && echo removed; n=$((n+1)); \
                 done; echo tries $n",
                stop = stop.display(),
                as_mallory = as_user(&mallory.name),
            ))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let (ok, stdout, stderr) = busctl(&alice.name, "Expose sasta{sv} 8080/tcp 1 10.99.1.2 0 0");
        assert!(ok, "round {round}: alice exposes: {stderr}");
        assert_eq!(busctl_string(&stdout), next, "ids are sequential");
        std::thread::sleep(Duration::from_millis(300));
        std::fs::write(&stop, "").unwrap();
        let output = looper.wait_with_output().unwrap();
        let printed = String::from_utf8_lossy(&output.stdout);
        assert!(
            !printed.contains("removed") && exposure_ids("root").contains(&next),
            "round {round}: mallory removed alice's {next}\n{}",
            service.log()
        );
        tries += printed
            .split_whitespace()
            .last()
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(0);
        assert_eq!(probe(HOST_V4, 8080), "open", "round {round}");
        let (ok, _, stderr) = busctl(&alice.name, &format!("Unexpose s {next}"));
        assert!(ok, "round {round}: alice removes her own: {stderr}");
    }
    eprintln!("20 rounds, {tries} Unexpose calls by mallory on the next id, none removed anything");
    assert!(tries >= 40, "the loop hardly ran: {tries} calls");
}

/// `dockgatectl status` as root: how long it takes, in ms.
fn time_status() -> f64 {
    let started = std::time::Instant::now();
    sh(&format!("{DOCKGATECTL} status >/dev/null"));
    started.elapsed().as_secs_f64() * 1000.0
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Issue 18, finding 4: a flood of 1000 Expose calls from a permitted user (before, 300 in
/// 10 s were all taken) makes the bound's worth of exposures and no more, does not keep root's
/// `dockgatectl status` waiting, and past the bound a call is refused naming it.
#[test]
fn a_flood_of_exposes_stops_at_the_bound_and_does_not_stall_root() {
    in_sandbox();
    let _web = Container::httpd("failsafe-flood", "-p 8080:80");
    let service = Service::start(
        "failsafe-flood",
        "default = \"deny\"\n[limits]\nexposures_per_uid = 16\n",
    );
    service.wait_for_api();
    service.wait_until_settled();
    let (alice, _mallory, _rules) = colleagues();

    let idle = median((0..7).map(|_| time_status()).collect());
    // The test-support program cargo builds beside this test (tests/support/api_flood.rs).
    let flooder = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("examples/api_flood");
    let flood = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "{}{} 1000 32",
            as_user(&alice.name),
            flooder.display()
        ))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let flood_started = std::time::Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    let during = median((0..7).map(|_| time_status()).collect());
    let flooded = flood.wait_with_output().unwrap();
    let flood_took = flood_started.elapsed();
    let flooded = String::from_utf8_lossy(&flooded.stdout).trim().to_owned();
    eprintln!(
        "{}: dockgatectl status as root: {idle:.1} ms idle, {during:.1} ms during a flood of \
         1000 Expose calls, 32 in flight, from one connection (which took {:.1} s: {flooded})",
        stack(),
        flood_took.as_secs_f64()
    );
    assert_eq!(
        flooded, "calls 1000 ok 16 limit 984 refused 0 other 0",
        "the flood made the bound's worth and was refused past it"
    );
    assert!(
        flood_took > Duration::from_secs(1),
        "the flood was over before status was timed"
    );
    assert!(
        during <= 5.0 * idle,
        "status took {during:.1} ms under the flood, {idle:.1} ms idle"
    );
    assert_eq!(
        exposure_ids("root").len(),
        16,
        "the flood made the bound's worth"
    );

    let (ok, _, refused) = try_sh(&format!(
        "{}{DOCKGATECTL} expose 8080/tcp --from 10.99.1.9",
        as_user(&alice.name)
    ));
    assert!(
        !ok && refused.contains("LimitExceeded: limits.exposures_per_uid: uid 64101 holds 16"),
        "{refused}"
    );
    // Root is bounded only by the total.
    sh(&format!("{DOCKGATECTL} expose 8080/tcp --from 10.99.1.9"));
}

/// Issue 18, finding 5: every listener on the system bus gets dockgated's signals; a listener
/// without any right learns no exposure id, uid or address from them.
#[test]
fn a_listener_without_rights_learns_no_id_uid_or_address_from_signals() {
    in_sandbox();
    let _web = Container::httpd("failsafe-signals", "-p 8080:80");
    let service = Service::start("failsafe-signals", "default = \"deny\"\n");
    service.wait_for_api();
    service.wait_until_settled();
    let (alice, _mallory, _rules) = colleagues();
    let output = service.dockgate.dir.join("nobody.monitor");
    let mut monitor = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "exec setpriv --reuid=65534 --regid=65534 --clear-groups \
             dbus-monitor --system \"type='signal',path='/org/dockgate/Dockgate1'\" >{} 2>/dev/null",
            output.display()
        ))
        .spawn()
        .unwrap();
    let seen = || std::fs::read_to_string(&output).unwrap_or_default();
    assert!(
        eventually(Duration::from_secs(10), || {
            sh("busctl --system emit /org/dockgate/Dockgate1 org.dockgate.Test Ready");
            seen().contains("member=Ready")
        }),
        "the monitor saw nothing"
    );
    let (ok, stdout, stderr) = busctl(&alice.name, "Expose sasta{sv} 8080/tcp 1 10.99.1.2 600 0");
    assert!(ok, "{stderr}");
    let id = busctl_string(&stdout);
    let (ok, _, stderr) = busctl(&alice.name, &format!("Unexpose s {id}"));
    assert!(ok, "{stderr}");
    sh(&format!("{DOCKGATECTL} reload"));
    std::thread::sleep(Duration::from_secs(1));
    let _ = monitor.kill();
    let _ = monitor.wait();
    let text = seen();
    for member in ["Reconciled", "ExposuresChanged", "PropertiesChanged"] {
        assert!(
            text.contains(&format!("member={member}")),
            "{member}:\n{text}"
        );
    }
    for secret in [id.as_str(), "runtime-", "64101", "dgo-alice", "10.99.1.2"] {
        assert!(!text.contains(secret), "{secret} in a signal:\n{text}");
    }
}

/// Docker's major version, as the server reports it.
fn docker_major() -> u32 {
    sh("docker version -f '{{.Server.Version}}'")
        .trim()
        .split('.')
        .next()
        .and_then(|major| major.parse().ok())
        .expect("docker version")
}

/// Issue 18, finding 7: where a client can route straight to container addresses, an
/// exposure of host port 8080 admits connections Docker DNATed from 8080 only, not a direct
/// connection to another container's own port 8080. Docker before 28 forwards routed clients
/// to published container ports on any network; Docker 28 only with gateway mode
/// nat-unprotected (or --allow-direct-routing), else its raw table drops them itself.
#[test]
fn an_exposure_admits_only_what_docker_dnated_from_its_host_port() {
    in_sandbox();
    let unprotected = if docker_major() >= 28 {
        "-o com.docker.network.bridge.gateway_mode_ipv4=nat-unprotected"
    } else {
        ""
    };
    let _network = DockerNetwork::create(
        "failsafe-direct",
        &format!("--subnet 172.30.9.0/24 {unprotected}"),
    );
    let _a = Container::httpd(
        "failsafe-direct-a",
        "--network failsafe-direct --ip 172.30.9.10 -p 8080:80",
    );
    let _b = Container::run(
        "failsafe-direct-b",
        "--network failsafe-direct --ip 172.30.9.11 -p 7070:8080",
        "/bin/httpd -f -p 8080 -h /www",
    );
    // Docker 27 and later let firewalld forward from every zone into zone docker (policy
    // docker-forwarding); with an older Docker an admin adds such a policy to route to
    // containers, and this test does so for its length.
    let _forwarding = (docker_major() < 27).then(ForwardingPolicy::add);
    sh("ip -n client1 route replace 172.30.9.0/24 via 10.99.1.1");
    // Docker alone: the routed client reaches B's own port 8080.
    assert_eq!(
        probe_until("172.30.9.11", 8080, "open", Duration::from_secs(5)),
        "open",
        "the sandbox routes client1 to the containers"
    );
    let service = Service::start(
        "failsafe-direct",
        &format!("default = \"deny\"\n[[expose]]\nport = \"8080/tcp\"\nfrom = [\"{DENIED}\"]\n"),
    );
    service.wait_until_settled();
    assert_eq!(probe(HOST_V4, 8080), "open", "the exposure, through DNAT");
    assert_eq!(
        probe("172.30.9.11", 8080),
        "dropped",
        "B's own port 8080, routed directly, is no exposure's host port"
    );
    assert_eq!(
        probe("172.30.9.10", 80),
        "dropped",
        "A's port, routed directly"
    );
    assert_eq!(probe(HOST_V4, 7070), "dropped", "B's host port, unexposed");
    let _ = try_sh("ip -n client1 route del 172.30.9.0/24");
}

/// A permanent firewalld policy forwarding from every zone into zone docker, as Docker 27
/// adds it itself (docker-forwarding); removed when dropped.
struct ForwardingPolicy;

const FORWARDING_POLICY: &str = "dg-test-forward";

impl ForwardingPolicy {
    fn add() -> ForwardingPolicy {
        let policy = format!("firewall-cmd --permanent --policy {FORWARDING_POLICY}");
        let _ = try_sh(&format!(
            "firewall-cmd --permanent --delete-policy {FORWARDING_POLICY}"
        ));
        sh(&format!(
            "firewall-cmd --permanent --new-policy {FORWARDING_POLICY} && \
             {policy} --set-target ACCEPT && {policy} --add-ingress-zone ANY && \
             {policy} --add-egress-zone docker && firewall-cmd --reload"
        ));
        wait_for_docker_rules_to_return();
        ForwardingPolicy
    }
}

impl Drop for ForwardingPolicy {
    fn drop(&mut self) {
        let _ = try_sh(&format!(
            "firewall-cmd --permanent --delete-policy {FORWARDING_POLICY} && firewall-cmd --reload"
        ));
        wait_for_docker_rules_to_return();
    }
}

/// After a firewalld reload, until Docker's FORWARD jump is back.
fn wait_for_docker_rules_to_return() {
    assert!(
        eventually(Duration::from_secs(10), || sh("iptables -S FORWARD")
            .contains("-j DOCKER-USER")),
        "Docker did not restore its rules"
    );
    std::thread::sleep(Duration::from_millis(500));
}

/// An echo session from client1 to HOST_V4:9000 for at most `seconds`; its lines as they come.
struct EchoSession {
    child: std::process::Child,
}

impl EchoSession {
    fn open(seconds: u32) -> (EchoSession, f64) {
        let mut child = std::process::Command::new("ip")
            .args(["netns", "exec", "client1", "echo-session", HOST_V4, "9000"])
            .arg(seconds.to_string())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
            &mut first,
        )
        .unwrap();
        let connected = match first.split_whitespace().collect::<Vec<_>>()[..] {
            ["connected", at] => at.parse().unwrap(),
            _ => panic!("echo-session: {first:?}"),
        };
        (EchoSession { child }, connected)
    }

    /// How it finished: ("ended", when, why) or ("alive", when, "").
    fn finish(self) -> (String, f64, String) {
        let output = self.child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let words: Vec<&str> = text.split_whitespace().collect();
        match words[..] {
            ["ended", at, why] => ("ended".to_owned(), at.parse().unwrap(), why.to_owned()),
            ["alive", at] => ("alive".to_owned(), at.parse().unwrap(), String::new()),
            _ => panic!("echo-session: {text:?}"),
        }
    }
}

/// on_revoke = "cut": a session through an exposure ends within 1 s of the exposure's removal
/// and of its expiry (with a reset, though the verdict is drop); with "keep", the default, it
/// lives on.
#[test]
fn with_on_revoke_cut_a_session_ends_with_its_exposure() {
    in_sandbox();
    let _echo = Container::run(
        "failsafe-echo",
        "-p 9000:9000",
        "/bin/socat TCP-LISTEN:9000,fork,reuseaddr EXEC:/bin/cat",
    );
    let service = Service::start("failsafe-cut", "default = \"deny\"\non_revoke = \"cut\"\n");
    service.wait_for_api();
    service.wait_until_settled();
    let expose = |for_: &str| {
        sh(&format!(
            "{DOCKGATECTL} expose 9000/tcp --from {DENIED} {for_}"
        ))
        .trim()
        .to_owned()
    };

    let id = expose("");
    let (session, _) = EchoSession::open(10);
    std::thread::sleep(Duration::from_millis(1500));
    let removed = unix_now();
    sh(&format!("{DOCKGATECTL} unexpose {id}"));
    let (state, at, why) = session.finish();
    eprintln!("cut on removal: {state} {:.3} s after, {why}", at - removed);
    assert_eq!((state.as_str(), why.as_str()), ("ended", "reset"));
    assert!(
        at - removed < 1.0,
        "ended {:.3} s after the removal",
        at - removed
    );

    let id = expose("--for 6s");
    let ends = expires_at(&id) as f64;
    let (session, _) = EchoSession::open(12);
    let (state, at, why) = session.finish();
    eprintln!(
        "cut on expiry: {state} {:.3} s after its end, {why}",
        at - ends
    );
    assert_eq!((state.as_str(), why.as_str()), ("ended", "reset"));
    assert!(
        (-0.05..1.0).contains(&(at - ends)),
        "ended {:.3} s after its end",
        at - ends
    );

    // The default, keep: the session outlives the exposure.
    std::fs::write(
        service.dockgate.dir.join("dockgate.toml"),
        "default = \"deny\"\n",
    )
    .unwrap();
    sh(&format!("{DOCKGATECTL} reload"));
    let id = expose("");
    let (session, _) = EchoSession::open(5);
    std::thread::sleep(Duration::from_millis(1500));
    sh(&format!("{DOCKGATECTL} unexpose {id}"));
    assert_eq!(
        probe(HOST_V4, 9000),
        "dropped",
        "new connections are refused"
    );
    let (state, _, why) = session.finish();
    assert_eq!(
        state, "alive",
        "with on_revoke = keep the session lives on ({why})"
    );
}
