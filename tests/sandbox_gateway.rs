//! Docker's gateway modes (issue 19): networks whose containers clients reach directly, at the
//! containers' own addresses, with dockgate's policy in force. "routed" (Docker 27 and later)
//! publishes a container's port without a host port: an exposure names it by that port and
//! its container (`container = "..."`), and matches the container's address and port.
//! "nat-unprotected" (Docker 28) DNATs host ports as usual but lets routed clients reach every
//! container port: an exposure of a host port admits only what Docker DNATed from it. Both
//! with packets, Explain and ListPorts agreeing. Skipped where Docker is older than 28.
#![cfg(feature = "sandbox-tests")]

mod common;

use std::time::Duration;

use common::*;

const TRUSTED: &str = "10.99.1.50";
const EXPOSED: &str = "10.99.1.2";
const EXPOSED_V6: &str = "fd99:1::2";
/// client2, behind ext2: neither trusted nor exposed.
const OTHER: &str = "10.99.2.2";

const ROUTED_V4: &str = "172.30.10.10";
const ROUTED_V6: &str = "fd00:30:10::10";
const UNPROTECTED_V4: &str = "172.30.11.10";

fn docker_major() -> u32 {
    sh("docker version -f '{{.Server.Version}}'")
        .trim()
        .split('.')
        .next()
        .and_then(|major| major.parse().ok())
        .expect("docker version")
}

/// One new connection from `source` (an address of client1, or client2's own) to
/// `address`:`port`.
fn probe_source(source: &str, address: &str, port: u16) -> String {
    let command = if source == OTHER {
        format!("sandbox-ctl probe --client 2 {address} {port}")
    } else {
        format!("sandbox-ctl probe --from {source} {address} {port}")
    };
    try_sh(&command).1.trim().to_owned()
}

fn explain(source: &str, port: &str) -> (bool, String) {
    let out = sh(&format!(
        "busctl --system call {API} Explain ss {source} {port}"
    ));
    (out.starts_with("bs true"), out)
}

#[test]
fn routed_and_nat_unprotected_networks_follow_the_policy() {
    in_sandbox();
    if docker_major() < 28 {
        eprintln!("Docker before 28 has no gateway mode nat-unprotected: nothing to test");
        return;
    }
    add_client_address(1, TRUSTED);
    let _routed = DockerNetwork::create(
        "gw-routed",
        "--ipv6 --subnet 172.30.10.0/24 --subnet fd00:30:10::/64 \
         -o com.docker.network.bridge.gateway_mode_ipv4=routed \
         -o com.docker.network.bridge.gateway_mode_ipv6=routed",
    );
    let _unprotected = DockerNetwork::create(
        "gw-unprotected",
        "--subnet 172.30.11.0/24 -o com.docker.network.bridge.gateway_mode_ipv4=nat-unprotected",
    );
    let _routed_web = Container::httpd(
        "gw-routed-web",
        &format!("--network gw-routed --ip {ROUTED_V4} --ip6 {ROUTED_V6} -p 8090:80"),
    );
    let _unprotected_web = Container::httpd(
        "gw-unprotected-web",
        &format!("--network gw-unprotected --ip {UNPROTECTED_V4} -p 8091:80"),
    );
    for (client, via, via6) in [(1, "10.99.1.1", "fd99:1::1"), (2, "10.99.2.1", "fd99:2::1")] {
        sh(&format!(
            "ip -n client{client} route replace 172.30.10.0/24 via {via}; \
             ip -n client{client} route replace 172.30.11.0/24 via {via}; \
             ip -n client{client} -6 route replace fd00:30:10::/64 via {via6}"
        ));
    }
    // Docker alone: anyone routed there reaches both containers' own port.
    assert_eq!(
        probe_until_from_source(OTHER, ROUTED_V4, 80),
        "open",
        "the sandbox routes to the routed network"
    );
    assert_eq!(probe_source(OTHER, UNPROTECTED_V4, 80), "open");

    let service = Service::start(
        "gateway",
        &format!(
            "default = \"deny\"\ntrusted = [\"{TRUSTED}\"]\n\n\
             [[expose]]\nport = \"80/tcp\"\ncontainer = \"gw-routed-web\"\nfrom = [\"{EXPOSED}\", \"{EXPOSED_V6}\"]\n\n\
             [[expose]]\nport = \"8091/tcp\"\nfrom = [\"{EXPOSED}\"]\n"
        ),
    );
    service.wait_for_api();
    service.wait_until_settled();

    // (source, address, port, gets in, Explain's source and port)
    let cases = [
        // routed: the exposure names the container's port at its address
        (EXPOSED, ROUTED_V4, 80, true, EXPOSED, "80/tcp"),
        (EXPOSED_V6, ROUTED_V6, 80, true, EXPOSED_V6, "80/tcp"),
        (TRUSTED, ROUTED_V4, 80, true, TRUSTED, "80/tcp"),
        (OTHER, ROUTED_V4, 80, false, OTHER, "80/tcp"),
        // nat-unprotected: host port 8091 through DNAT, the container's own port not
        (EXPOSED, HOST_V4, 8091, true, EXPOSED, "8091/tcp"),
        (OTHER, "10.99.2.1", 8091, false, OTHER, "8091/tcp"),
        (EXPOSED, UNPROTECTED_V4, 80, false, "", ""),
        (TRUSTED, UNPROTECTED_V4, 80, true, "", ""),
    ];
    for (source, address, port, gets_in, explained, explained_port) in cases {
        let answer = if gets_in {
            probe_until_from_source(source, address, port)
        } else {
            probe_source(source, address, port)
        };
        assert_eq!(
            answer == "open",
            gets_in,
            "{source} to {address}:{port}: {answer}\n{}",
            service.log()
        );
        if !explained.is_empty() {
            let (allowed, why) = explain(explained, explained_port);
            assert_eq!(
                allowed, gets_in,
                "Explain {explained} {explained_port}: {why}"
            );
        }
    }
    // ListPorts lists the routed port at the container's address, exposed.
    let ports = sh(&format!("{DOCKGATECTL} ports --json"));
    let rows: serde_json::Value = serde_json::from_str(&ports).unwrap();
    let routed = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["host_ip"] == ROUTED_V4)
        .unwrap_or_else(|| panic!("no routed row: {ports}"));
    assert_eq!(routed["host_port"], 80);
    assert_eq!(routed["state"], "exposed", "{routed}");
    let inspect = sh(&format!("{} inspect", service.dockgate.args()));
    assert!(
        inspect.lines().any(|line| line.contains("gw-routed-web")
            && line.contains(ROUTED_V4)
            && line.contains("exposed")),
        "{inspect}"
    );
    for client in [1, 2] {
        let _ = try_sh(&format!(
            "ip -n client{client} route del 172.30.10.0/24; ip -n client{client} route del 172.30.11.0/24; \
             ip -n client{client} -6 route del fd00:30:10::/64"
        ));
    }
}

fn probe_until_from_source(source: &str, address: &str, port: u16) -> String {
    let mut answer = String::new();
    for _ in 0..25 {
        answer = probe_source(source, address, port);
        if answer == "open" {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    answer
}
