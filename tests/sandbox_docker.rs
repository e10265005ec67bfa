//! The Docker client against a real dockerd, and what firewalld sees of Docker's bridges.
#![cfg(feature = "sandbox-tests")]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use dockgate::docker::DockerEvent;
use dockgate::firewalld::{Firewall, ZoneEvent};
use futures_util::StreamExt;

/// Parses `docker ps` Ports column entries like "0.0.0.0:8080->80/tcp, :::8080->80/tcp" into
/// (host ip, host port, container port, protocol). Unpublished ports ("80/tcp") are skipped.
fn parse_docker_ps_ports(name: &str, ports: &str) -> Vec<(String, String, u16, u16, String)> {
    ports
        .split(", ")
        .filter_map(|entry| {
            let (host, target) = entry.split_once("->")?;
            let (host_ip, host_port) = host.rsplit_once(':')?;
            let (container_port, protocol) = target.split_once('/')?;
            let host_ip = match host_ip {
                "::" | "[::]" => "::".to_owned(),
                other => other.trim_matches(['[', ']']).to_owned(),
            };
            Some((
                name.to_owned(),
                host_ip,
                host_port.parse().ok()?,
                container_port.parse().ok()?,
                protocol.to_owned(),
            ))
        })
        .collect()
}

#[tokio::test]
async fn published_ports_read_through_bollard_match_docker_ps() {
    in_sandbox();
    let _web = Container::httpd("ports-web", "-p 18081:80 -p 127.0.0.1:18082:80");
    let _udp = Container::udp_echo("ports-udp", "-p 19001:9000/udp");

    let ours: BTreeSet<_> = docker()
        .published_ports()
        .await
        .expect("published ports")
        .into_iter()
        .map(|port| {
            (
                port.container,
                port.host_ip.to_string(),
                port.host_port,
                port.container_port,
                port.protocol.to_string(),
            )
        })
        .collect();
    let theirs: BTreeSet<_> = sh("docker ps --format '{{.Names}}\t{{.Ports}}'")
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .flat_map(|(name, ports)| parse_docker_ps_ports(name, ports))
        .collect();
    assert_eq!(ours, theirs);
    assert!(
        ours.contains(&(
            "ports-web".into(),
            "127.0.0.1".into(),
            18082,
            80,
            "tcp".into()
        )),
        "{ours:?}"
    );
    assert!(
        ours.iter()
            .any(|port| port.0 == "ports-udp" && port.4 == "udp" && port.1 == "::"),
        "the udp port is published on IPv6 too: {ours:?}"
    );

    // The container address is the one Docker forwards to: it answers on the container port.
    let ports = docker().published_ports().await.unwrap();
    let web = ports
        .iter()
        .find(|port| port.container == "ports-web" && port.host_ip.is_ipv4())
        .unwrap();
    let ip = web
        .container_ip
        .expect("an IPv4 address on the default bridge");
    assert_eq!(
        sh(&format!(
            "busybox wget -qO- http://{ip}:{}/",
            web.container_port
        ))
        .trim(),
        "hello from the sandbox"
    );
}

#[tokio::test]
async fn a_custom_named_bridge_is_reported_with_its_real_name_and_zone() {
    in_sandbox();
    let _ = try_sh("docker network rm dgnet");
    sh("docker network create -o com.docker.network.bridge.name=dg-custom0 dgnet");
    let _app = Container::httpd("custom-app", "--network dgnet");

    let networks = docker().networks().await.expect("networks");
    let dgnet = networks
        .iter()
        .find(|network| network.name == "dgnet")
        .expect("dgnet listed");
    assert_eq!(dgnet.bridge.as_deref(), Some("dg-custom0"));
    assert!(!dgnet.subnets.is_empty(), "{dgnet:?}");
    sh("ip link show dg-custom0");
    let default = networks
        .iter()
        .find(|network| network.name == "bridge")
        .unwrap();
    assert_eq!(default.bridge.as_deref(), Some("docker0"));

    let firewalld = firewalld().await;
    let zone = firewalld.zone_of_interface("dg-custom0").await.unwrap();
    assert_eq!(
        zone.as_deref(),
        Some(sh("firewall-cmd --get-zone-of-interface=dg-custom0").trim())
    );
    assert_eq!(zone.as_deref(), Some("docker"));
    let active = firewalld.active_zones().await.unwrap();
    assert!(
        active["docker"]
            .interfaces
            .contains(&"dg-custom0".to_owned()),
        "{active:?}"
    );

    drop(_app);
    sh("docker network rm dgnet");
}

#[tokio::test]
async fn docker_reinserting_docker0_after_a_restart_is_seen() {
    in_sandbox();
    let firewalld = firewalld().await;
    let mut zone_events = firewalld.zone_events().await.unwrap();

    sh("firewall-cmd --zone=docker --remove-interface=docker0");
    let removed = within(10, "InterfaceRemoved", zone_events.next())
        .await
        .unwrap();
    assert_eq!(
        removed,
        ZoneEvent::InterfaceRemoved {
            zone: "docker".into(),
            interface: "docker0".into()
        }
    );
    assert_eq!(firewalld.zone_of_interface("docker0").await.unwrap(), None);

    sh("sandbox-ctl restart dockerd");
    let reinserted = within(60, "docker0 back in zone docker", async {
        loop {
            let event = zone_events.next().await.expect("zone events go on");
            if let ZoneEvent::InterfaceAdded { zone, interface } = &event
                && interface == "docker0"
            {
                return zone.clone();
            }
        }
    })
    .await;
    assert_eq!(reinserted, "docker");
    assert_eq!(
        firewalld
            .zone_of_interface("docker0")
            .await
            .unwrap()
            .as_deref(),
        Some("docker")
    );
}

// Multi-threaded: the watcher must run while the test blocks on docker commands.
#[tokio::test(flavor = "multi_thread")]
async fn the_event_stream_survives_a_dockerd_restart() {
    in_sandbox();
    let docker = docker();
    let mut events = docker.watch();
    let connected = within(10, "the first Resynced", events.recv()).await;
    assert_eq!(connected, Some(DockerEvent::Resynced));
    let first = Container::httpd("events-a", "");
    within(10, "the start of events-a", async {
        while let Some(event) = events.recv().await {
            if matches!(&event, DockerEvent::Container { action, .. } if action == "start") {
                return;
            }
        }
    })
    .await;
    drop(first);

    sh("sandbox-ctl restart dockerd");
    let mut seen = Vec::new();
    within(60, "Disconnected then Resynced", async {
        while let Some(event) = events.recv().await {
            if matches!(event, DockerEvent::Disconnected | DockerEvent::Resynced) {
                seen.push(event.clone());
            }
            if event == DockerEvent::Resynced {
                return;
            }
        }
    })
    .await;
    assert_eq!(seen, [DockerEvent::Disconnected, DockerEvent::Resynced]);

    let _second = Container::httpd("events-b", "");
    let id = sh("docker inspect -f '{{.Id}}' events-b").trim().to_owned();
    within(10, "the start of events-b after the restart", async {
        while let Some(event) = events.recv().await {
            if event
                == (DockerEvent::Container {
                    action: "start".into(),
                    id: id.clone(),
                })
            {
                return;
            }
        }
    })
    .await;
    // Docker's own rules are back after the restart: the new container's port works.
    let _web = Container::httpd("events-web", "-p 18083:80");
    assert_eq!(
        probe_until(HOST_V4, 18083, "open", Duration::from_secs(5)),
        "open"
    );
}

/// The tests' own cleanup (see `remove_stale_docker0_ports`): a docker0 port that is no
/// container's goes, the ports of running containers stay and their published ports answer.
#[test]
fn a_docker0_port_no_container_uses_is_removed_and_the_containers_keep_theirs() {
    in_sandbox();
    let _one = Container::httpd("stale-one", "-p 18111:80");
    let _two = Container::httpd("stale-two", "-p 18112:80");
    sh("ip link add dgstale0 type veth peer name dgstale1 && \
        ip link set dgstale0 master docker0 up");
    let ports_before = sh("ip -o link show master docker0").lines().count();

    assert_eq!(remove_stale_docker0_ports(), ["dgstale0"]);
    assert_eq!(
        sh("ip -o link show master docker0").lines().count(),
        ports_before - 1
    );
    for port in [18111, 18112] {
        assert_eq!(
            probe_until(HOST_V4, port, "open", Duration::from_secs(5)),
            "open"
        );
    }
    assert!(remove_stale_docker0_ports().is_empty());
}

/// "1.41" -> (1, 41).
fn api_version(text: &str) -> (u32, u32) {
    let (major, minor) = text.trim().split_once('.').expect("an API version");
    (major.parse().unwrap(), minor.parse().unwrap())
}

/// Issue 19: every request dockgate makes names an API version this Docker takes (bollard
/// 0.21 meant to and did not: its requests went out unversioned, answered at Docker's newest).
/// On bookworm that is 1.41, Docker 20.10's, which refuses anything newer with HTTP 400.
/// Watched on the wire: socat logs what goes between dockgated and Docker's socket.
#[test]
fn every_request_names_an_api_version_this_docker_takes() {
    in_sandbox();
    let _web = Container::httpd("api-version-web", "-p 8080:80");
    let proxy = "/run/sandbox/docker-api.sock";
    let wire = "/run/sandbox/docker-api.log";
    let _ = std::fs::remove_file(proxy);
    let mut socat = std::process::Command::new("socat")
        .args([
            "-v",
            &format!("UNIX-LISTEN:{proxy},fork"),
            "UNIX-CONNECT:/run/docker.sock",
        ])
        .stderr(std::fs::File::create(wire).unwrap())
        .spawn()
        .unwrap();
    assert!(eventually(Duration::from_secs(5), || std::path::Path::new(
        proxy
    )
    .exists()));
    let dockgate = Dockgate::new("api-version");
    std::fs::write(dockgate.dir.join("dockgate.toml"), "").unwrap();
    let (ok, report, stderr) = try_sh(&format!(
        "{} inspect --docker-socket {proxy}",
        dockgate.args()
    ));
    let _ = socat.kill();
    let _ = socat.wait();
    assert!(ok, "inspect: {stderr}\n{report}");
    assert!(report.contains("api-version-web"), "{report}");

    let text = std::fs::read_to_string(wire).unwrap();
    let requests: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("GET ") || line.starts_with("POST "))
        .collect();
    let statuses: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("HTTP/1.1 "))
        .collect();
    let newest = api_version(&sh("docker version -f '{{.Server.APIVersion}}'"));
    let oldest = api_version(&sh("docker version -f '{{.Server.MinAPIVersion}}'"));
    eprintln!(
        "{}: Docker takes API {oldest:?} to {newest:?}; dockgate sent {requests:?}",
        stack()
    );
    let asked: Vec<&str> = requests
        .iter()
        .filter_map(|request| request.split_whitespace().nth(1))
        .filter(|path| !path.starts_with("/version"))
        .collect();
    assert!(asked.len() >= 3, "{text}");
    for path in asked {
        let version = path
            .strip_prefix("/v")
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_else(|| panic!("{path} names no API version"));
        let version = api_version(version);
        assert!(
            oldest <= version && version <= newest,
            "{path}: Docker takes {oldest:?} to {newest:?}"
        );
    }
    assert!(
        statuses
            .iter()
            .all(|status| status.starts_with("HTTP/1.1 200")),
        "{statuses:?}"
    );
}
