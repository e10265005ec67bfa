//! `[zone]`: what containers may reach on the host, and bridges bound to another zone, with
//! real firewalld, real Docker restarts and real packets.
#![cfg(feature = "sandbox-tests")]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

/// A TCP listener, on the host itself or in a client's namespace; stopped when dropped.
struct Listener {
    child: Child,
    port: u16,
}

impl Listener {
    fn on_host(port: u16) -> Self {
        Self::start(Command::new("socat"), port)
    }

    fn in_client1(port: u16) -> Self {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", "client1", "socat"]);
        Self::start(command, port)
    }

    fn start(mut command: Command, port: u16) -> Self {
        let child = command
            .arg("-u")
            .arg(format!("TCP-LISTEN:{port},fork,reuseaddr"))
            .arg("/dev/null")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        Listener { child, port }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn container_reaches(container: &str, address: &str, port: u16) -> bool {
    try_sh(&format!(
        "docker exec {container} socat -u /dev/null TCP:{address}:{port},connect-timeout=2"
    ))
    .0
}

/// Whether a container connects to a port of the host through its bridge's gateway.
fn container_reaches_host(container: &str, port: u16) -> bool {
    let gateway = sh(&format!(
        "docker inspect -f '{{{{range .NetworkSettings.Networks}}}}{{{{.Gateway}}}}{{{{end}}}}' {container}"
    ));
    try_sh(&format!(
        "docker exec {container} socat -u /dev/null TCP:{}:{port},connect-timeout=2",
        gateway.trim()
    ))
    .0
}

fn zone_target() -> String {
    sh("firewall-cmd --permanent --zone=docker --get-target")
        .trim()
        .to_owned()
}

#[test]
fn zone_docker_host_access_dns_only_survives_docker_restarts_and_is_restored() {
    in_sandbox();
    let _dns = Listener::on_host(53);
    let _other = Listener::on_host(9999);
    let client = Container::run("zone-client", "--stop-timeout 1", "/bin/sleep 600");
    assert!(container_reaches_host(&client.name, 53));
    assert!(
        container_reaches_host(&client.name, 9999),
        "zone docker as Docker made it (ACCEPT) lets containers reach every host port"
    );
    let target_before = zone_target();

    let dockgate = Dockgate::new("dns-only");
    dockgate.apply("[zone]\ntarget = \"default\"\nservices = [\"dns\"]\n");
    // The target changed through a reload; Docker puts docker0 back into its zone on that.
    assert!(
        eventually(Duration::from_secs(10), || container_reaches_host(
            &client.name,
            53
        )),
        "dns is allowed"
    );
    assert!(
        !container_reaches_host(&client.name, 9999),
        "other host ports are closed now"
    );
    assert_eq!(zone_target(), "default");
    let outside = Listener::in_client1(7000);
    assert!(
        container_reaches(&client.name, "10.99.1.2", outside.port),
        "containers still reach the outside"
    );
    let services = sh("firewall-cmd --zone=docker --list-services");
    assert!(
        services.split_whitespace().any(|s| s == "dns"),
        "{services}"
    );

    for _ in 0..2 {
        sh("sandbox-ctl restart dockerd");
        sh("docker start zone-client");
        assert!(
            eventually(Duration::from_secs(10), || container_reaches_host(
                &client.name,
                53
            )),
            "after a Docker restart"
        );
        assert!(
            !container_reaches_host(&client.name, 9999),
            "after a Docker restart"
        );
    }
    assert_eq!(dockgate.reapply_writes(), 0);

    assert!(
        container_reaches(&client.name, "10.99.1.2", outside.port),
        "containers still reach the outside after Docker restarts"
    );
    dockgate.remove();
    assert_eq!(zone_target(), target_before, "--remove restores the target");
    assert!(
        !sh("firewall-cmd --permanent --get-policies").contains("dockgate"),
        "--remove takes dockgate's policy out"
    );
    assert!(eventually(Duration::from_secs(10), || {
        container_reaches_host(&client.name, 9999)
    }));
}

fn zone_of(interface: &str) -> String {
    let (_, stdout, _) = try_sh(&format!("firewall-cmd --get-zone-of-interface={interface}"));
    stdout.trim().to_owned()
}

fn bridge_of(network: &str) -> String {
    let id = sh(&format!(
        "docker network inspect -f '{{{{.Id}}}}' {network}"
    ));
    format!("br-{}", &id.trim()[..12])
}

#[test]
fn bridges_bound_to_internal_keep_exposed_ports_working_across_twenty_docker_restarts() {
    in_sandbox();
    let _ = try_sh("docker network rm bind-net");
    sh("docker network create bind-net");
    let user_bridge = bridge_of("bind-net");
    let _web = Container::httpd("bind-web", "-p 8080:80 --restart always --stop-timeout 1");
    let _app = Container::httpd(
        "bind-app",
        "--network bind-net -p 8081:80 --restart always --stop-timeout 1",
    );
    add_client_address(1, "10.99.1.50");
    let dockgate = Dockgate::new("bind");
    dockgate.apply("trusted = [\"10.99.1.50\"]\n[zone]\nbind = \"internal\"\n");
    for bridge in ["docker0", &user_bridge] {
        assert_eq!(zone_of(bridge), "internal", "{bridge}");
    }
    let exposed_ports_work = |when: &str| {
        for port in [8080, 8081] {
            let allowed = |_: ()| {
                try_sh(&format!(
                    "sandbox-ctl probe --from 10.99.1.50 {HOST_V4} {port}"
                ))
                .1
                .trim()
                    == "open"
            };
            assert!(
                eventually(Duration::from_secs(10), || allowed(())),
                "{when}: {port} from the trusted source"
            );
            assert_eq!(probe(HOST_V4, port), "dropped", "{when}: {port} denied");
        }
    };
    exposed_ports_work("bound");

    let prestart = format!(
        "{DOCKGATECTL} docker-prestart --state-dir {}",
        dockgate.state_dir().display()
    );
    let mut started = 0;
    for _ in 0..20 {
        sh(&prestart);
        assert_eq!(zone_of("docker0"), "docker", "prestart returned docker0");
        let (ok, _, stderr) = try_sh("sandbox-ctl restart dockerd");
        if ok {
            started += 1;
        } else {
            eprintln!("dockerd did not start: {stderr}");
        }
        dockgate.reapply_writes();
        assert_eq!(zone_of("docker0"), "internal");
        assert_eq!(zone_of(&user_bridge), "internal");
    }
    eprintln!(
        "{}: Docker started {started} of 20 times with prestart",
        stack()
    );
    assert_eq!(started, 20);
    exposed_ports_work("after twenty restarts");

    dockgate.remove();
    assert_eq!(zone_of("docker0"), "docker", "--remove returns the bridges");
    drop(dockgate);
    let _ = try_sh("docker rm -f bind-web bind-app");
    let _ = try_sh("docker network rm bind-net");
}
