//! dockgated as the daemon tests run it, and what they ask of the daemons around it.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::*;

/// A running dockgated; SIGTERM and `--remove` when dropped.
pub struct Service {
    pub dockgate: Dockgate,
    pub child: Child,
}

impl Service {
    pub fn start(name: &str, config: &str) -> Self {
        Self::start_with_state(name, config, &[])
    }

    /// Starts with state files already in the state dir (name, content).
    pub fn start_with_state(name: &str, config: &str, files: &[(&str, String)]) -> Self {
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
    pub fn restart(&mut self) {
        self.signal("TERM");
        let _ = self.child.wait();
        self.child = Self::spawn(&self.dockgate);
    }

    pub fn spawn(dockgate: &Dockgate) -> Child {
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

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dockgate.dir.join("dockgated.log")).unwrap_or_default()
    }

    pub fn signal(&self, signal: &str) {
        sh(&format!("kill -{signal} {}", self.child.id()));
    }

    pub fn reconciles(&self) -> usize {
        self.log().matches("reconciled").count()
    }

    /// Reconciles logged so far whose triggers include `trigger` ("config reloaded").
    pub fn reconciles_for(&self, trigger: &str) -> usize {
        self.log()
            .lines()
            .filter(|line| {
                line.contains("reconciled")
                    && line
                        .split("trigger=\"")
                        .nth(1)
                        .is_some_and(|rest| rest.split('"').next().unwrap_or("").contains(trigger))
            })
            .count()
    }

    /// Waits until one more reconcile for `trigger` than `count` is logged.
    pub fn wait_for_reconcile_for(&self, trigger: &str, count: usize) {
        assert!(
            eventually(Duration::from_secs(20), || self.reconciles_for(trigger)
                > count),
            "no reconcile for {trigger:?} logged:\n{}",
            self.log()
        );
    }

    /// Waits until the daemon owns its name on the system bus.
    pub fn wait_for_api(&self) {
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
    /// start may make (CleanupOnExit, first registration), as dockgated itself waits.
    pub fn wait_until_settled(&self) {
        self.wait_for_reconcile_after(0);
        wait_for_rebuild_seen(|| self.log());
    }

    /// The trusted source 10.99.1.50 reaches port 8080 (within 15 s), client1's own address does
    /// not; on failure, what the kernel and the daemons say.
    pub fn allowed_and_denied(&self, when: &str) {
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
    pub fn wait_for_reconcile_after(&self, count: usize) {
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

/// When dockgated's log (`log`) shows a reconcile that reloaded firewalld, until it says that
/// Docker's rebuild after it is over. Its giving up (30 s) fails: here Docker does rebuild.
pub fn wait_for_rebuild_seen(log: impl Fn() -> String) {
    assert!(
        eventually(Duration::from_secs(35), || {
            let log = log();
            !log.contains("reloaded=true")
                || log.contains("Docker's rebuild after the firewalld reload is over")
                || log.contains("was not seen to end")
        }),
        "no word of Docker's rebuild:\n{}",
        log()
    );
    assert!(
        !log().contains("was not seen to end"),
        "Docker's rebuild was not seen to end:\n{}",
        log()
    );
}

pub fn zone_of(interface: &str) -> String {
    let (_, stdout, _) = try_sh(&format!("firewall-cmd --get-zone-of-interface={interface}"));
    stdout.trim().to_owned()
}

/// Rules with dockgate's marker in the kernel (mangle and filter, one family).
pub fn kernel_rules(tool: &str) -> Vec<String> {
    let mut rules: Vec<String> = sh(&format!("{tool}-save -t mangle; {tool}-save -t filter"))
        .lines()
        .filter(|line| line.contains("dockgate"))
        .map(str::to_owned)
        .collect();
    rules.sort();
    rules
}

/// What the kernel and the daemons say, for a failure message.
pub fn diagnostics(service: &Service) -> String {
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
pub fn cleanup_on_exit() -> String {
    busctl_string(&sh(
        "busctl --system get-property org.fedoraproject.FirewallD1 \
         /org/fedoraproject/FirewallD1/config org.fedoraproject.FirewallD1.config CleanupOnExit",
    ))
}

/// The text of a single string busctl printed (`s "internal"`).
pub fn busctl_string(output: &str) -> String {
    output
        .trim()
        .trim_start_matches("s ")
        .trim_matches('"')
        .to_owned()
}

/// The zone of an interface, asked over D-Bus directly (firewall-cmd starts Python: too slow
/// to time a correction with).
pub fn zone_now(interface: &str) -> String {
    let (_, stdout, _) = try_sh(&format!(
        "busctl --system call org.fedoraproject.FirewallD1 /org/fedoraproject/FirewallD1 \
         org.fedoraproject.FirewallD1.zone getZoneOfInterface s {interface}"
    ));
    busctl_string(&stdout)
}

/// When Docker last finished re-creating its rules after a firewalld reload (Docker 28 reports
/// it in `docker info`, to the second; Docker 20.10 reports nothing: None).
pub fn docker_reloaded_at() -> Option<String> {
    let (_, stdout, _) = try_sh("docker info --format '{{json .FirewallBackend}}'");
    let backend: serde_json::Value = serde_json::from_str(stdout.trim()).ok()?;
    backend["Info"]
        .as_array()?
        .iter()
        .find(|pair| pair[0] == "ReloadedAt")
        .and_then(|pair| pair[1].as_str())
        .map(str::to_owned)
}

pub fn docker_answers() -> bool {
    try_sh("curl -sf --max-time 1 --unix-socket /run/docker.sock http://docker/_ping").0
}

pub fn user_bridge(network: &str) -> String {
    format!(
        "br-{}",
        &sh(&format!(
            "docker network inspect -f '{{{{.Id}}}}' {network}"
        ))
        .trim()[..12]
    )
}

/// The prefix that runs a command as `user`: nothing for root, setpriv (group nogroup, no
/// supplementary groups) for anyone else.
pub fn as_user(user: &str) -> String {
    if user == "root" {
        String::new()
    } else {
        format!("setpriv --reuid={user} --regid=65534 --clear-groups ")
    }
}

/// `busctl call` on dockgate's API, as `user` ("root" or an unprivileged one).
pub fn busctl(user: &str, arguments: &str) -> (bool, String, String) {
    try_sh(&format!(
        "{}busctl --system call {API} {arguments}",
        as_user(user)
    ))
}

/// The D-Bus error name of a call with a simple signature (dbus-send prints it; busctl does not).
pub fn dbus_error(user: &str, method: &str, arguments: &str) -> String {
    let (_, _, stderr) = try_sh(&format!(
        "{}dbus-send --system --print-reply --dest=org.dockgate.Dockgate1 \
         /org/dockgate/Dockgate1 org.dockgate.Dockgate1.{method} {arguments}",
        as_user(user)
    ));
    stderr
}

pub fn exposure_ids(user: &str) -> Vec<String> {
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
pub fn permissions(user: &str) -> String {
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

pub fn dockgatectl(arguments: &str) -> (bool, String, String) {
    try_sh(&format!("{DOCKGATECTL} {arguments}"))
}
