//! Helpers for the tests that run inside tests/sandbox (feature `sandbox-tests`): shell out to
//! the sandbox's tools, probe from client namespaces, and clean up containers.
#![allow(dead_code)] // each test binary uses its own subset

mod service;

use std::process::Command;
use std::time::{Duration, Instant};

#[allow(unused_imports)] // each test binary uses its own subset
pub use service::*;

use dockgate::docker::Docker;
use dockgate::firewalld::{
    DOCKER_USER, DirectChain, ErrorCode, Family, Firewall, Firewalld, FirewalldError, Layer,
};

/// The sandbox's external interface ext1 as client1 sees it.
pub const HOST_V4: &str = "10.99.1.1";
pub const HOST_V6: &str = "fd99:1::1";

pub fn in_sandbox() {
    assert_eq!(
        std::env::var("DOCKGATE_SANDBOX").as_deref(),
        Ok("1"),
        "these tests need real daemons: run them through tests/run or tests/sandbox/sandbox"
    );
}

pub fn stack() -> String {
    std::env::var("DOCKGATE_STACK").expect("DOCKGATE_STACK is set by the sandbox")
}

/// firewalld's version as (major, minor), from `firewall-cmd --version` ("2.3.1" is (2, 3)).
/// Tests about a version's behaviour branch on it rather than on the stack's name.
pub fn firewalld_version() -> (u32, u32) {
    let version = sh("firewall-cmd --version");
    let mut numbers = version
        .trim()
        .split('.')
        .map(|number| number.parse::<u32>().ok());
    match (numbers.next().flatten(), numbers.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor),
        _ => panic!("firewalld's version {version:?}"),
    }
}

/// The Docker engine's major version ("26.1.5+dfsg1" is 26).
pub fn docker_major_version() -> u32 {
    let version = sh("docker version -f '{{.Server.Version}}'");
    version
        .trim()
        .split('.')
        .next()
        .and_then(|major| major.parse().ok())
        .unwrap_or_else(|| panic!("Docker's version {version:?}"))
}

/// Runs a shell command, asserting it succeeds; returns its stdout.
pub fn sh(command: &str) -> String {
    let (ok, stdout, stderr) = try_sh(command);
    assert!(ok, "`{command}` failed:\n{stdout}{stderr}");
    stdout
}

pub fn try_sh(command: &str) -> (bool, String, String) {
    let output = Command::new("bash")
        .args(["-c", command])
        .output()
        .expect("bash runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// One new TCP connection attempt from client1: "open", "rejected" or "dropped".
pub fn probe(host: &str, port: u16) -> String {
    let (_, stdout, _) = try_sh(&format!("sandbox-ctl probe {host} {port}"));
    stdout.trim().to_owned()
}

pub fn probe_udp(host: &str, port: u16) -> String {
    let (_, stdout, _) = try_sh(&format!("sandbox-ctl probe --udp {host} {port}"));
    stdout.trim().to_owned()
}

/// Probes until the expected answer comes or the time is up; returns the last answer.
pub fn probe_until(host: &str, port: u16, expected: &str, within: Duration) -> String {
    let start = Instant::now();
    loop {
        let answer = probe(host, port);
        if answer == expected || start.elapsed() > within {
            return answer;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A probe from client1 using one of its extra source addresses (see add_client_address).
pub fn probe_from(address: &str, host: &str, port: u16) -> String {
    let (_, stdout, _) = try_sh(&format!("sandbox-ctl probe --from {address} {host} {port}"));
    stdout.trim().to_owned()
}

/// Probes HOST_V4 from `address` until the answer is `expected` or the time is up.
pub fn probe_until_from(address: &str, port: u16, expected: &str, within: Duration) -> String {
    let start = Instant::now();
    loop {
        let answer = probe_from(address, HOST_V4, port);
        if answer == expected || start.elapsed() > within {
            return answer;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What one probe stream saw (tests/sandbox/probe-stream).
#[derive(Debug)]
pub struct Stream {
    pub attempts: usize,
    pub open: usize,
    pub failed: usize,
    pub last_open: Option<f64>,
    pub last_failed: Option<f64>,
}

/// `rate` new TCP connections a second from `source` (an address of client1) to HOST_V4:`port`
/// for `seconds`, each started whatever happened to the ones before.
pub fn start_stream_to(port: u16, rate: u32, source: &str, seconds: u32) -> std::process::Child {
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
        .args([
            &port.to_string(),
            &rate.to_string(),
            &seconds.to_string(),
            source,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

pub fn finish_stream(child: std::process::Child) -> Stream {
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

pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Polls a condition until it holds or the time is up; whether it held.
pub fn eventually(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if condition() {
            return true;
        }
        if start.elapsed() > within {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// After a firewalld reload Docker rebuilds its rules; DNAT comes back some tens of ms before
/// FORWARD's jump to DOCKER-USER, so the jump is what says the rebuild is done.
pub fn wait_for_docker_rules(published_port: u16) {
    assert!(
        eventually(Duration::from_secs(10), || {
            sh("iptables -S FORWARD").contains("-j DOCKER-USER")
        }),
        "Docker did not restore its FORWARD -> DOCKER-USER jump"
    );
    assert_eq!(
        probe_until(HOST_V4, published_port, "open", Duration::from_secs(5)),
        "open"
    );
}

pub async fn firewalld() -> Firewalld {
    let connection = zbus::Connection::system().await.expect("system bus");
    Firewalld::new(&connection)
        .await
        .expect("firewalld proxies")
}

/// Makes DOCKER-USER (both families) ready for direct rules without costing Docker its own, as
/// dockgate's applier does: on firewalld 2.x, whose first runtime direct call flushes every
/// iptables table, through the permanent layer and one reload; on 1.x at run time, where the
/// IPv4 chain Docker made cannot be created again (`iptables -N` fails) and need not be.
pub async fn register_docker_user(firewalld: &Firewalld) {
    let chains = Family::ALL.map(|family| DirectChain::new(family, "filter", DOCKER_USER));
    let registered = firewalld.chains(Layer::Runtime).await.unwrap();
    if chains.iter().all(|chain| registered.contains(chain)) {
        return;
    }
    if firewalld.major_version().await.unwrap() >= 2 {
        let permanent = firewalld.chains(Layer::Permanent).await.unwrap();
        for chain in chains.iter().filter(|chain| !permanent.contains(chain)) {
            firewalld.add_chain(Layer::Permanent, chain).await.unwrap();
        }
        firewalld.reload_and_wait().await.unwrap();
        return;
    }
    for chain in chains.iter().filter(|chain| !registered.contains(chain)) {
        match firewalld.add_chain(Layer::Runtime, chain).await {
            Err(FirewalldError::Refused {
                code: ErrorCode::CommandFailed,
                detail,
            }) if detail.contains("Chain already exists") => {}
            other => other.unwrap(),
        }
    }
}

pub fn docker() -> Docker {
    Docker::new(dockgate::docker::DEFAULT_SOCKET)
}

/// Lines in a table of iptables-save for a family ("iptables" or "ip6tables").
pub fn iptables_lines(tool: &str, table: &str) -> usize {
    iptables_rules(tool, table).len()
}

/// The rules in a table of iptables-save for a family, as iptables-save prints them.
pub fn iptables_rules(tool: &str, table: &str) -> Vec<String> {
    sh(&format!("{tool}-save -t {table}"))
        .lines()
        .filter(|line| line.starts_with('-'))
        .map(str::to_owned)
        .collect()
}

/// Whether filter FORWARD's first rule is Docker's jump to DOCKER-USER.
pub fn docker_user_jump_is_first() -> bool {
    sh("iptables -S FORWARD")
        .lines()
        .find(|line| line.starts_with("-A FORWARD"))
        .is_some_and(|line| line == "-A FORWARD -j DOCKER-USER")
}

/// Docker before 28 (20.10 on bookworm, 26 on trixie) rebuilds filter FORWARD after a
/// firewalld reload in an order of its own: with a container on docker0, 26.1.5 put its jump
/// to DOCKER-USER last, behind the rules that accept traffic to docker0 (20.10 does the same),
/// so rules in DOCKER-USER filter nothing until dockerd starts again and puts the jump first.
/// For tests whose subject is what a rule in DOCKER-USER does, not where Docker puts its jump:
/// restarts dockerd when the jump is not first (containers that must survive it need
/// `--restart always`); whether it had to.
pub fn put_docker_user_jump_first() -> bool {
    if docker_user_jump_is_first() {
        return false;
    }
    eprintln!(
        "Docker {} left its jump to DOCKER-USER behind others after the reload:\n{}\nrestarting dockerd",
        docker_major_version(),
        sh("iptables -S FORWARD")
    );
    sh("sandbox-ctl restart dockerd");
    assert!(
        eventually(Duration::from_secs(15), docker_user_jump_is_first),
        "dockerd did not put its jump to DOCKER-USER first:\n{}",
        sh("iptables -S FORWARD")
    );
    true
}

/// A container running busybox httpd on port 80, removed when dropped.
pub struct Container {
    pub name: String,
}

impl Container {
    /// `docker run -d --name NAME ARGS bb COMMAND`, in a docker0 that holds no stale port (see
    /// [`remove_stale_docker0_ports`]).
    pub fn run(name: &str, docker_args: &str, command: &str) -> Container {
        let _ = try_sh(&format!("docker rm -f {name}"));
        let stale = remove_stale_docker0_ports();
        if !stale.is_empty() {
            eprintln!("removed stale docker0 ports left by an earlier dockerd: {stale:?}");
        }
        sh(&format!(
            "docker run -d --name {name} {docker_args} bb {command}"
        ));
        Container {
            name: name.to_owned(),
        }
    }

    pub fn httpd(name: &str, docker_args: &str) -> Container {
        Container::run(name, docker_args, "/bin/httpd -f -p 80 -h /www")
    }

    pub fn udp_echo(name: &str, docker_args: &str) -> Container {
        Container::run(
            name,
            docker_args,
            "/bin/socat UDP6-RECVFROM:9000,fork,ipv6only=0 EXEC:/bin/cat",
        )
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = try_sh(&format!("docker rm -f {}", self.name));
    }
}

/// Docker 20.10, killed and started again, sometimes leaves the killed container's network
/// namespace behind with its veth still in docker0 (seen in the sandbox after dockerd kill -9
/// and start with a `--restart always` container): a second host with the container's address
/// and MAC, which resets connections whenever the bridge sends them to its port, until it goes.
/// Removes every docker0 port that is no running container's interface; returns their names.
/// Call it only while no container is starting.
pub fn remove_stale_docker0_ports() -> Vec<String> {
    let (_, ports, _) = try_sh("ip -o link show master docker0");
    let (listed, containers, _) = try_sh("timeout 10 docker ps -q");
    if !listed {
        return Vec::new();
    }
    // The host-side index of each container interface's peer ("eth0@if17"), read over netlink
    // in the container's network namespace (a container's /sys is not that namespace's view on
    // the sid stack).
    let mut live = String::new();
    for container in containers.split_whitespace() {
        let (ok, links, _) = try_sh(&format!(
            "pid=$(timeout 10 docker inspect -f '{{{{.State.Pid}}}}' {container}) && \
             nsenter -t \"$pid\" -n ip -o link show"
        ));
        if !ok {
            // Not sure which ports are in use: touch nothing.
            return Vec::new();
        }
        live += &links;
    }
    let live: Vec<&str> = live
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '@')
        .filter_map(|word| word.split_once("@if").map(|(_, index)| index))
        .collect();
    let mut removed = Vec::new();
    for line in ports.lines() {
        // "217: veth697e7f4@if216: <BROADCAST,..."
        let mut fields = line.split(": ");
        let (Some(index), Some(name)) = (fields.next(), fields.next()) else {
            continue;
        };
        let name = name.split('@').next().unwrap_or(name);
        if !live.contains(&index.trim()) && try_sh(&format!("ip link del {name}")).0 {
            removed.push(name.to_owned());
        }
    }
    removed
}

/// dockerd restarted with more arguments (`--live-restore`) for the length of a test; when
/// dropped, restarted as the sandbox made it.
pub struct DockerdArgs;

const DOCKERD_ARGS: &str = "/run/sandbox/dockerd-args";

impl DockerdArgs {
    pub fn set(args: &str) -> DockerdArgs {
        std::fs::write(DOCKERD_ARGS, args).unwrap();
        sh("sandbox-ctl restart dockerd");
        DockerdArgs
    }
}

impl Drop for DockerdArgs {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(DOCKERD_ARGS);
        // Started again if it was stopped, restarted if it runs.
        let _ = try_sh("sandbox-ctl restart dockerd");
    }
}

/// A Docker network (`docker network create ARGS NAME`), removed when dropped.
pub struct DockerNetwork(pub String);

impl DockerNetwork {
    pub fn create(name: &str, args: &str) -> DockerNetwork {
        let _ = try_sh(&format!("docker network rm {name}"));
        sh(&format!("docker network create {args} {name}"));
        DockerNetwork(name.to_owned())
    }
}

impl Drop for DockerNetwork {
    fn drop(&mut self) {
        let _ = try_sh(&format!("docker network rm {}", self.0));
    }
}

/// Awaits a future for at most `seconds`, panicking with `what` when it takes longer.
pub async fn within<T>(
    seconds: u64,
    what: &str,
    future: impl std::future::Future<Output = T>,
) -> T {
    tokio::time::timeout(Duration::from_secs(seconds), future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {seconds} s waiting for {what}"))
}

/// dockgated's API as busctl names it: service, object path, interface.
pub const API: &str = "org.dockgate.Dockgate1 /org/dockgate/Dockgate1 org.dockgate.Dockgate1";

pub const DOCKGATED: &str = env!("CARGO_BIN_EXE_dockgated");
pub const DOCKGATECTL: &str = env!("CARGO_BIN_EXE_dockgatectl");

/// dockgated with its own config file and state dir; `--remove` when dropped, so every test
/// starts from a firewalld without dockgate.
pub struct Dockgate {
    pub dir: std::path::PathBuf,
}

impl Dockgate {
    pub fn new(name: &str) -> Self {
        // Per stack: the sandboxes of both stacks share the machine's /tmp and may run at once.
        let dir = std::env::temp_dir().join(format!("dockgate-test-{}-{name}", stack()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Dockgate { dir }
    }

    pub fn state_dir(&self) -> std::path::PathBuf {
        self.dir.join("state")
    }

    pub fn args(&self) -> String {
        format!(
            "{DOCKGATED} --config {} --state-dir {}",
            self.dir.join("dockgate.toml").display(),
            self.state_dir().display()
        )
    }

    /// Writes the config and applies it; returns dockgated's summary line.
    pub fn apply(&self, config: &str) -> String {
        std::fs::write(self.dir.join("dockgate.toml"), config).unwrap();
        self.apply_again()
    }

    /// Applies the config already written. When firewalld had to reload (firewalld 2.x, first
    /// rules), waits for Docker to finish rebuilding its rules, as it does on `Reloaded`.
    pub fn apply_again(&self) -> String {
        let dnat_before = dnat_rules();
        let line = sh(&format!("{} --once", self.args()));
        if line.contains("firewalld reloaded") {
            assert!(
                eventually(Duration::from_secs(10), || {
                    dnat_rules() >= dnat_before
                        && sh("iptables -S FORWARD").contains("-j DOCKER-USER")
                }),
                "Docker did not rebuild its rules after the reload"
            );
        }
        line
    }

    /// Applies the config already written and returns the number of firewalld writes.
    pub fn reapply_writes(&self) -> usize {
        let line = self.apply_again();
        line.split(", ")
            .find_map(|part| part.strip_suffix(" firewalld writes"))
            .unwrap_or_else(|| panic!("no write count in {line:?}"))
            .parse()
            .unwrap()
    }

    pub fn once(&self) -> (bool, String, String) {
        try_sh(&format!("{} --once", self.args()))
    }

    pub fn remove(&self) {
        sh(&format!("{} --remove", self.args()));
    }
}

impl Drop for Dockgate {
    fn drop(&mut self) {
        let _ = try_sh(&format!("{} --remove", self.args()));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Docker's DNAT rules, both families.
fn dnat_rules() -> usize {
    sh("iptables-save -t nat; ip6tables-save -t nat")
        .lines()
        .filter(|line| line.contains("-j DNAT"))
        .count()
}

/// Gives client N another source address (once; later calls find it there).
pub fn add_client_address(client: u8, address: &str) {
    let _ = try_sh(&format!(
        "sandbox-ctl add-client-address {client} {address}"
    ));
}

/// An unprivileged user of the sandbox's private /etc/passwd (added once), a member of
/// `groups` for the length of the test: when dropped it leaves them again, and a group it made
/// goes with it, whatever other tests' users did meanwhile.
pub struct TestUser {
    pub name: String,
    pub uid: u32,
    groups: Vec<String>,
    made: Vec<String>,
}

/// /etc/group, rewritten in place: it is a bind mount that a rename would not replace.
fn edit_groups(mut edit: impl FnMut(&str, Vec<String>) -> Option<Vec<String>>) {
    let text: String = std::fs::read_to_string("/etc/group")
        .unwrap()
        .lines()
        .filter_map(|line| {
            let (head, members) = line.rsplit_once(':').unwrap_or((line, ""));
            let group = head.split(':').next().unwrap_or_default();
            let members = members
                .split(',')
                .filter(|member| !member.is_empty())
                .map(str::to_owned)
                .collect();
            edit(group, members).map(|members| format!("{head}:{}\n", members.join(",")))
        })
        .collect();
    std::fs::write("/etc/group", text).unwrap();
}

impl TestUser {
    pub fn add(name: &str, uid: u32, groups: &[&str]) -> TestUser {
        sh(&format!(
            "grep -q '^{name}:' /etc/passwd || \
             echo '{name}:x:{uid}:65534:dockgate test:/nonexistent:/usr/sbin/nologin' >> /etc/passwd"
        ));
        let mut missing: Vec<&str> = groups.to_vec();
        edit_groups(|group, mut members| {
            if let Some(at) = missing.iter().position(|wanted| *wanted == group) {
                missing.remove(at);
                if !members.iter().any(|member| member == name) {
                    members.push(name.to_owned());
                }
            }
            Some(members)
        });
        let mut text = std::fs::read_to_string("/etc/group").unwrap();
        for (n, group) in missing.iter().enumerate() {
            // dockgate's gid as the API test has always made it; others below it.
            let gid = if *group == "dockgate" {
                64999
            } else {
                64990 - n as u32
            };
            text += &format!("{group}:x:{gid}:{name}\n");
        }
        std::fs::write("/etc/group", text).unwrap();
        TestUser {
            name: name.to_owned(),
            uid,
            groups: groups.iter().map(|group| (*group).to_owned()).collect(),
            made: missing.iter().map(|group| (*group).to_owned()).collect(),
        }
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        edit_groups(|group, mut members| {
            if self.groups.iter().any(|ours| ours == group) {
                members.retain(|member| *member != self.name);
                if members.is_empty() && self.made.iter().any(|made| made == group) {
                    return None;
                }
            }
            Some(members)
        });
    }
}

/// A polkit rules file in the sandbox's private /etc/polkit-1/rules.d, removed when dropped.
pub struct PolkitRules(std::path::PathBuf);

impl PolkitRules {
    /// `example`: a file of the repository's polkit/ directory, installed as shipped.
    pub fn example(example: &str) -> PolkitRules {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("polkit")
                .join(example),
        )
        .unwrap();
        PolkitRules::install(example.trim_end_matches(".example"), &text)
    }

    pub fn install(name: &str, text: &str) -> PolkitRules {
        let path = std::path::Path::new("/etc/polkit-1/rules.d").join(name);
        std::fs::write(&path, text).unwrap();
        PolkitRules(path)
    }
}

impl Drop for PolkitRules {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A command run inside the sandbox's systemd (`sandbox-ctl start systemd`): systemctl,
/// journalctl and the like.
pub fn systemd(command: &str) -> (bool, String, String) {
    try_sh(&format!("sandbox-ctl systemd {command}"))
}

/// A property of dockgate.service as that systemd has it.
pub fn unit_property(name: &str) -> String {
    systemd(&format!("systemctl show -P {name} dockgate.service"))
        .1
        .trim()
        .to_owned()
}

/// What `journalctl -u dockgate` shows an admin (message text only).
pub fn journal() -> String {
    systemd("journalctl --no-pager -o cat -u dockgate.service").1
}
