//! dockgatectl as an admin uses it, against the running daemon: every command, tables and JSON,
//! errors in one line, and polkit's password prompt in a terminal.
#![cfg(feature = "sandbox-tests")]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

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
