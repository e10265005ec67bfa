//! firewalld's StrictForwardPorts (2.3 and later, RHEL 10, Fedora) with dockgate: where it is
//! on, firewalld refuses every connection Docker DNATs unless a forward-port names its port,
//! so dockgate keeps one for each published port its policy lets some source reach, and its
//! rules still judge the source. Skipped where firewalld has no such setting (bookworm's 1.3).
#![cfg(feature = "sandbox-tests")]

mod common;

use std::time::Duration;

use common::*;

const TRUSTED: &str = "10.99.1.50";
const EXPOSED: &str = "10.99.1.2";
/// client2, behind ext2: neither trusted nor exposed.
const OTHER: &str = "10.99.2.2";

fn set_strict(value: &str) {
    sh(&format!(
        "busctl --system set-property org.fedoraproject.FirewallD1 \
         /org/fedoraproject/FirewallD1/config org.fedoraproject.FirewallD1.config \
         StrictForwardPorts s {value} && firewall-cmd --reload"
    ));
}

/// StrictForwardPorts back to no when dropped.
struct Strict;

impl Drop for Strict {
    fn drop(&mut self) {
        let _ = try_sh(
            "busctl --system set-property org.fedoraproject.FirewallD1 \
             /org/fedoraproject/FirewallD1/config org.fedoraproject.FirewallD1.config \
             StrictForwardPorts s no && firewall-cmd --reload",
        );
    }
}

/// One new connection from `source` to host port `port`: open, rejected or dropped.
fn probe_source(source: &str, port: u16) -> String {
    if source == OTHER {
        let (_, stdout, _) = try_sh(&format!("sandbox-ctl probe --client 2 10.99.2.1 {port}"));
        stdout.trim().to_owned()
    } else {
        probe_from(source, HOST_V4, port)
    }
}

/// What dockgated's Explain says of `source` and `port`: whether it gets in, and why.
fn explain(source: &str, port: u16) -> (bool, String) {
    let out = sh(&format!(
        "busctl --system call {API} Explain ss {source} {port}/tcp"
    ));
    (out.starts_with("bs true"), out)
}

/// dockgate's forward-ports (those to its black hole) in zone public, both layers.
fn dockgates_forward_ports() -> String {
    sh("firewall-cmd --zone public --list-forward-ports; \
        firewall-cmd --permanent --zone public --list-forward-ports")
    .lines()
    .filter(|line| line.contains("toaddr=127.0.0.1"))
    .collect::<Vec<_>>()
    .join("\n")
}

/// Every source against both ports, packets and Explain, after `when`.
fn check(when: &str, expected: &[(&str, u16, bool)]) {
    for &(source, port, allowed) in expected {
        let answer = if allowed {
            probe_until_from_source(source, port)
        } else {
            probe_source(source, port)
        };
        let (said, why) = explain(source, port);
        assert_eq!(
            (answer == "open", said),
            (allowed, allowed),
            "{when}: {source} to {port}: packets {answer}, Explain {why}"
        );
    }
}

fn probe_until_from_source(source: &str, port: u16) -> String {
    let mut answer = String::new();
    for _ in 0..25 {
        answer = probe_source(source, port);
        if answer == "open" {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    answer
}

#[test]
fn exposures_and_trusted_sources_work_under_strict_forward_ports() {
    in_sandbox();
    let version = sh("firewall-cmd --version");
    let mut parts = version
        .trim()
        .split('.')
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if (major, minor) < (2, 3) {
        eprintln!(
            "firewalld {} has no StrictForwardPorts: nothing to test",
            version.trim()
        );
        return;
    }
    add_client_address(1, TRUSTED);
    let _web = Container::httpd("strict-web", "-p 8080:80 --restart always");
    let _db = Container::httpd("strict-db", "-p 8081:80 --restart always");
    let _strict = Strict;
    set_strict("yes");
    wait_for_docker_rules_to_return();
    // firewalld alone refuses what Docker forwards, to everyone.
    assert_ne!(
        probe_source(TRUSTED, 8080),
        "open",
        "StrictForwardPorts is in force"
    );

    let config = format!(
        "default = \"deny\"\ntrusted = [\"{TRUSTED}\"]\n\n[[expose]]\nport = \"8080/tcp\"\nfrom = [\"{EXPOSED}\"]\n"
    );
    let service = Service::start("strict", &config);
    service.wait_for_api();
    service.wait_until_settled();
    let expected = [
        (TRUSTED, 8080, true),
        (TRUSTED, 8081, true),
        (EXPOSED, 8080, true),
        (EXPOSED, 8081, false),
        (OTHER, 8080, false),
        (OTHER, 8081, false),
    ];
    check("start", &expected);
    assert!(
        busctl("root", "Explain ss 10.99.1.2 8080/tcp")
            .1
            .contains("StrictForwardPorts"),
        "Explain says that StrictForwardPorts is in force"
    );
    // The forward-port does not redirect: the answer is the container's.
    let page = sh(&format!(
        "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | \
         ip netns exec client1 socat - TCP:{HOST_V4}:8080,connect-timeout=2"
    ));
    assert!(page.contains("hello from the sandbox"), "{page}");
    let forwarded = dockgates_forward_ports();
    assert_eq!(
        forwarded.lines().count(),
        4,
        "8080 and 8081, both layers:\n{forwarded}"
    );

    sh("firewall-cmd --reload");
    wait_for_docker_rules_to_return();
    check("after a reload", &expected);
    sh("sandbox-ctl restart firewalld");
    wait_for_docker_rules_to_return();
    check("after a firewalld restart", &expected);
    sh("sandbox-ctl restart dockerd");
    check("after a dockerd restart", &expected);

    // A port nobody may reach gets no forward-port.
    std::fs::write(
        service.dockgate.dir.join("dockgate.toml"),
        format!("default = \"deny\"\n\n[[expose]]\nport = \"8080/tcp\"\nfrom = [\"{EXPOSED}\"]\n"),
    )
    .unwrap();
    sh(&format!("{DOCKGATECTL} reload"));
    let forwarded = dockgates_forward_ports();
    assert!(
        forwarded.lines().all(|line| line.contains("port=8080")) && forwarded.lines().count() == 2,
        "only 8080's:\n{forwarded}"
    );
    check(
        "without trusted sources",
        &[
            (TRUSTED, 8081, false),
            (EXPOSED, 8080, true),
            (OTHER, 8080, false),
        ],
    );

    // StrictForwardPorts off: dockgate's forward-ports go.
    set_strict("no");
    assert!(
        eventually(Duration::from_secs(10), || dockgates_forward_ports()
            .is_empty()),
        "{}",
        dockgates_forward_ports()
    );
    check(
        "StrictForwardPorts off",
        &[(EXPOSED, 8080, true), (OTHER, 8080, false)],
    );
}

/// After a firewalld reload or start, until Docker's FORWARD jump is back.
fn wait_for_docker_rules_to_return() {
    assert!(
        eventually(Duration::from_secs(10), || sh("iptables -S FORWARD")
            .contains("-j DOCKER-USER")),
        "Docker did not restore its rules"
    );
    std::thread::sleep(Duration::from_millis(500));
}
