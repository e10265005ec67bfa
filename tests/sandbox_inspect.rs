//! `dockgated inspect` against the real daemons: what it reports must match firewall-cmd,
//! docker ps and real packets from a client.
#![cfg(feature = "sandbox-tests")]

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use dockgate::firewalld::{DOCKER_USER, DirectRule, Family, Firewall, Layer};
use serde_json::Value;

fn inspect(extra: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_dockgated"))
        .arg("inspect")
        .args(extra)
        .output()
        .expect("dockgated runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

fn inspect_json() -> Value {
    let (ok, stdout) = inspect(&["--json"]);
    assert!(ok, "dockgated inspect --json failed:\n{stdout}");
    serde_json::from_str(&stdout).expect("valid JSON")
}

fn port_entry<'a>(report: &'a Value, container: &str, host_ip: &str) -> &'a Value {
    report["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|port| port["container"] == container && port["host_ip"] == host_ip)
        .unwrap_or_else(|| panic!("no {container} port on {host_ip} in {report:#}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn inspect_reports_what_firewalld_docker_and_packets_say() {
    in_sandbox();
    let _ = try_sh("docker network rm insp-net");
    sh("docker network create -o com.docker.network.bridge.name=dg-insp0 insp-net");
    // --restart always: put_docker_user_jump_first may restart dockerd.
    let _web = Container::httpd("insp-web", "-p 18100:80 --restart always --stop-timeout 1");
    let _local = Container::httpd("insp-local", "--network insp-net -p 127.0.0.1:18101:80");

    let report = inspect_json();
    assert_eq!(
        report["firewalld"]["version"],
        sh("firewall-cmd --version").trim()
    );
    assert_eq!(
        report["docker"]["version"],
        sh("docker version -f '{{.Server.Version}}'").trim()
    );
    // Docker's firewall backend as Docker reports it (28.1 and later), nothing where it does not.
    let backend = &report["docker"]["firewall_backend"];
    if docker_major_version() >= 28 {
        assert_eq!(
            backend.as_str(),
            Some(sh("docker info -f '{{.FirewallBackend.Driver}}'").trim()),
            "{report:#}"
        );
        let (_, text) = inspect(&[]);
        assert!(
            text.contains(&format!("firewall backend {}", backend.as_str().unwrap())),
            "{text}"
        );
    } else {
        assert!(backend.is_null(), "{report:#}");
    }
    for bridge in ["docker0", "dg-insp0"] {
        let entry = report["bridges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|entry| entry["bridge"] == bridge)
            .unwrap_or_else(|| panic!("{bridge} missing from {report:#}"));
        assert_eq!(
            entry["zone"],
            sh(&format!("firewall-cmd --get-zone-of-interface={bridge}")).trim()
        );
    }

    // Without dockgate's rules Docker alone decides: open means open, a client on the
    // external interface gets in.
    assert_eq!(report["dockgate"]["state"], "not-applied", "{report:#}");
    let web = port_entry(&report, "insp-web", "0.0.0.0");
    assert_eq!(web["host_port"], 18100);
    assert_eq!(web["outside"]["state"], "open");
    assert_eq!(web["outside"]["judged_by"], "dockgate");
    assert_eq!(
        probe_until(HOST_V4, 18100, "open", Duration::from_secs(5)),
        "open"
    );
    assert_eq!(
        port_entry(&report, "insp-web", "::")["outside"]["state"],
        "open"
    );
    // A new container's IPv6 address passes traffic only after DAD, a second or two.
    assert_eq!(
        probe_until(HOST_V6, 18100, "open", Duration::from_secs(5)),
        "open"
    );
    // Loopback only means other hosts cannot reach it.
    let local = port_entry(&report, "insp-local", "127.0.0.1");
    assert_eq!(local["loopback_only"], true);
    assert_eq!(local["outside"]["state"], "denied");
    assert_ne!(probe(HOST_V4, 18101), "open");
    // insp-net has no IPv6: Docker serves [::]:18102 with docker-proxy, and the host's zone
    // (public, where ext1 falls) does not let it in.
    let _proxied = Container::httpd("insp-proxied", "--network insp-net -p 18102:80");
    let report = inspect_json();
    let proxied = port_entry(&report, "insp-proxied", "::");
    assert_eq!(proxied["container_ip"], Value::Null);
    let zone = sh("firewall-cmd --get-default-zone").trim().to_owned();
    assert_eq!(proxied["outside"]["judged_by"], format!("zone {zone}"));
    assert_eq!(proxied["outside"]["state"], "denied");
    assert_ne!(probe(HOST_V6, 18102), "open");
    // The zone opens the port: docker-proxy's port is open to everyone, and inspect says so.
    sh(&format!("firewall-cmd --zone={zone} --add-port=18102/tcp"));
    let report = inspect_json();
    assert_eq!(
        port_entry(&report, "insp-proxied", "::")["outside"]["state"],
        "open"
    );
    assert_eq!(
        probe_until(HOST_V6, 18102, "open", Duration::from_secs(5)),
        "open"
    );
    sh(&format!(
        "firewall-cmd --zone={zone} --remove-port=18102/tcp"
    ));
    assert_eq!(
        port_entry(&report, "insp-proxied", "0.0.0.0")["outside"]["state"],
        "open"
    );
    drop(_proxied);

    let (ok, text) = inspect(&[]);
    assert!(ok);
    for expected in [
        "dg-insp0",
        "127.0.0.1:18101",
        "OPEN to every source",
        "loopback only",
        "Docker alone decides",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }

    // A DROP rule of someone else's in DOCKER-USER: inspect does not claim to know who gets
    // through on IPv4 any more, and the rule does filter.
    let firewalld = firewalld().await;
    register_docker_user(&firewalld).await;
    // On firewalld 2.x the first registration reloads, and Docker rebuilds its rules after,
    // Docker before 28 with its jump to DOCKER-USER possibly last, where the rule below would
    // not filter (see put_docker_user_jump_first).
    wait_for_docker_rules(18100);
    if put_docker_user_jump_first() {
        wait_for_docker_rules(18100);
    }
    let rule = DirectRule {
        family: Family::Ipv4,
        table: "filter".into(),
        chain: DOCKER_USER.into(),
        priority: 0,
        args: "-p tcp -m conntrack --ctorigdstport 18100 -s 10.99.1.2 -j DROP"
            .split(' ')
            .map(str::to_owned)
            .collect(),
    };
    firewalld.add_rule(Layer::Runtime, &rule).await.unwrap();
    let report = inspect_json();
    let web = port_entry(&report, "insp-web", "0.0.0.0");
    assert_eq!(web["outside"], Value::Null);
    assert!(
        web["unknown"]
            .as_str()
            .unwrap_or_default()
            .contains("DOCKER-USER rules that are not dockgate's"),
        "{web}"
    );
    assert_eq!(
        port_entry(&report, "insp-web", "::")["outside"]["state"],
        "open"
    );
    assert_eq!(
        report["docker_user_rules"][0]["args"],
        serde_json::json!(rule.args)
    );
    assert_eq!(probe(HOST_V4, 18100), "dropped");
    firewalld.remove_rule(Layer::Runtime, &rule).await.unwrap();

    drop(_local);
    sh("docker network rm insp-net");
}

#[test]
fn inspect_with_docker_down_reports_it_and_fails() {
    in_sandbox();
    sh("sandbox-ctl stop dockerd");
    let (ok, text) = inspect(&[]);
    sh("sandbox-ctl start dockerd");
    assert!(!ok, "a report missing Docker is not a success");
    assert!(text.contains("firewalld "), "{text}");
    assert!(text.contains("Docker: Docker is not reachable"), "{text}");
}
