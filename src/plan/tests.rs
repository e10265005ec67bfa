use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;

use super::*;
use crate::config::Config;
use crate::docker::Protocol;
use crate::exposures::listed;

fn config(text: &str) -> Config {
    Config::parse(text, Path::new("test.toml")).expect("test config parses")
}

fn published(container: &str, host_port: u16, container_ip: &str) -> PublishedPort {
    PublishedPort {
        container: container.to_owned(),
        container_id: format!("{container}-id"),
        host_ip: "0.0.0.0".parse().unwrap(),
        host_port,
        protocol: Protocol::Tcp,
        container_ip: Some(container_ip.parse::<IpAddr>().unwrap()),
        container_port: 80,
        routed: false,
    }
}

fn plan_of(config: &Config, docker: &DockerView) -> Plan {
    let policy = Policy::new(config, &listed(config, &[]), &docker.ports);
    plan(&policy, &docker.bridges)
}

fn docker_default() -> DockerView {
    DockerView {
        ports: vec![published("web", 8080, "172.17.0.2")],
        bridges: vec!["docker0".to_owned()],
    }
}

#[test]
fn one_trusted_address_and_reject() {
    let config = config(
        r#"
        verdict = "reject"
        trusted = ["10.99.1.50"]
        "#,
    );
    insta::assert_snapshot!(plan_of(&config, &docker_default()).render());
}

#[test]
fn trusted_subnet_range_and_v6() {
    let config = config(
        r#"
        trusted = ["10.99.1.0/24", "10.99.3.10-10.99.3.20", "fd99:1::/64", "203.0.113.7"]
        "#,
    );
    insta::assert_snapshot!(plan_of(&config, &docker_default()).render());
}

#[test]
fn lan_only_with_one_public_host_port_and_a_user_network() {
    let config = config(
        r#"
        external_interfaces = ["ext1", "ext2"]
        trusted = ["192.168.1.0/24"]

        [[expose]]
        port = "8080/tcp"
        from = ["any"]
        comment = "public web"
        "#,
    );
    let docker = DockerView {
        ports: vec![published("web", 8080, "172.18.0.2")],
        bridges: vec!["docker0".to_owned(), "br-0123456789ab".to_owned()],
    };
    insta::assert_snapshot!(plan_of(&config, &docker).render());
}

#[test]
fn admins_lan_public_container_ports_and_trusted_only_port() {
    let config = config(
        r#"
        trusted = ["10.99.1.50", "10.99.1.51", "192.168.1.0/24"]

        [[expose]]
        port = "80/tcp"
        from = ["any"]
        container = "www"

        [[expose]]
        port = "443/tcp"
        from = ["any"]
        container = "www"
        "#,
    );
    let docker = DockerView {
        ports: vec![
            published("www", 80, "172.17.0.2"),
            published("www", 443, "172.17.0.2"),
            published("db", 5432, "172.17.0.3"),
        ],
        bridges: vec!["docker0".to_owned(), "custombr".to_owned()],
    };
    insta::assert_snapshot!(plan_of(&config, &docker).render());
}

#[test]
fn container_bound_exposure_needs_the_container_publishing_the_port() {
    let config = config(
        r#"
        [[expose]]
        port = "80/tcp"
        from = ["any"]
        container = "www"
        "#,
    );
    let stopped = DockerView {
        ports: vec![published("db", 5432, "172.17.0.3")],
        bridges: vec!["docker0".to_owned()],
    };
    let running = DockerView {
        ports: vec![published("www", 80, "172.17.0.2")],
        bridges: vec!["docker0".to_owned()],
    };
    let has_exposure = |plan: &Plan| plan.render().contains("dockgate:expose:config-1");
    assert!(!has_exposure(&plan_of(&config, &stopped)));
    assert!(has_exposure(&plan_of(&config, &running)));
}

#[test]
fn an_exposure_follows_the_host_port_not_the_container_address() {
    let config = config(
        r#"
        [[expose]]
        port = "8000-8010/udp"
        from = ["10.99.1.0/24", "fd99:1::/64"]
        "#,
    );
    let before = plan_of(&config, &docker_default());
    let mut moved = docker_default();
    moved.ports[0].container_ip = Some("172.17.0.9".parse().unwrap());
    assert_eq!(before, plan_of(&config, &moved));
    let text = before.render();
    assert!(text.contains(
        "ipv4 mangle DOCKGATE-JUDGE 0 -p udp -m conntrack --ctstate DNAT --ctorigdstport 8000:8010 -s 10.99.1.0/24"
    ));
    assert!(text.contains(
        "ipv6 mangle DOCKGATE-JUDGE 0 -p udp -m conntrack --ctstate DNAT --ctorigdstport 8000:8010 -s fd99:1::/64"
    ));
}

#[test]
fn sources_of_one_family_allow_nothing_in_the_other() {
    let config = config(
        r#"
        [[expose]]
        port = "443/tcp"
        from = ["fd00::/8"]
        "#,
    );
    let text = plan_of(&config, &docker_default()).render();
    assert!(text.contains("ipv6 mangle DOCKGATE-JUDGE 0 -p tcp"));
    assert!(!text.contains("ipv4 mangle DOCKGATE-JUDGE 0 -p tcp"));
    assert!(text.contains("ipv4 mangle DOCKGATE-JUDGE 10 -m comment --comment dockgate:deny"));
}

#[test]
fn any_among_trusted_sources_makes_one_rule() {
    let config = config(r#"trusted = ["10.0.0.0/8", "any"]"#);
    let text = plan_of(&config, &docker_default()).render();
    let trusted: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("dockgate:trusted"))
        .collect();
    assert_eq!(
        trusted,
        [
            "ipv4 mangle DOCKGATE-JUDGE 0 -m comment --comment dockgate:trusted -j RETURN",
            "ipv6 mangle DOCKGATE-JUDGE 0 -m comment --comment dockgate:trusted -j RETURN",
        ]
    );
}

#[test]
fn default_allow_plans_nothing() {
    let config = config(
        r#"
        default = "allow"
        trusted = ["10.0.0.0/8"]
        "#,
    );
    assert_eq!(plan_of(&config, &docker_default()), Plan::default());
}

#[test]
fn every_rule_carries_the_marker() {
    let config = config(
        r#"
        verdict = "reject"
        trusted = ["10.0.0.0/8", "10.1.0.1-10.1.0.9"]
        [[expose]]
        port = "80/tcp"
        from = ["any"]
        "#,
    );
    let plan = plan_of(&config, &docker_default());
    for rule in &plan.rules {
        assert!(
            rule.comment()
                .is_some_and(|comment| comment.starts_with(MARKER)),
            "{rule}"
        );
    }
}

#[test]
fn the_start_up_guard_sits_in_nat_before_docker_and_lets_seen_connections_pass() {
    let text = plan_of(&config("trusted = [\"10.99.1.50\"]"), &docker_default()).render();
    for family in ["ipv4", "ipv6"] {
        let seen = format!(
            "{family} mangle PREROUTING 0 -m addrtype --dst-type LOCAL -m conntrack --ctstate NEW \
             -m comment --comment dockgate:seen -j MARK --set-xmark {SEEN_MARK}"
        );
        let guard = format!(
            "{family} nat PREROUTING 0 -m addrtype --dst-type LOCAL -m conntrack --ctstate NEW \
             -m mark ! --mark {SEEN_MARK} -m comment --comment dockgate:unjudged -j ACCEPT"
        );
        assert!(text.contains(&seen), "{text}");
        assert!(text.contains(&guard), "{text}");
    }
    assert_ne!(SEEN_MARK, DENY_MARK);
}

#[test]
fn a_time_limited_grant_ends_in_its_rules_at_the_second_it_ends() {
    // 1_800_000_000 is 2027-01-15T08:00:00Z: the last second it admits is the one before.
    assert_eq!(datestop(1_800_000_000), "2027-01-15T07:59:59");
}

#[test]
fn an_exposure_admits_what_docker_dnated_from_its_host_port_and_nothing_routed_directly() {
    let config = config(
        "trusted = [\"10.0.0.0/24\"]\n[[expose]]\nport = \"8080/tcp\"\nfrom = [\"203.0.113.7\"]\n",
    );
    let policy = Policy::new(&config, &listed(&config, &[]), &[]);
    let rules: Vec<_> = plan(&policy, &["docker0".to_owned()])
        .rules
        .into_iter()
        .collect();
    let packet = |source: &str, dnat: bool| crate::netfilter::Packet {
        source: source.parse().unwrap(),
        in_interface: "eth0".to_owned(),
        out_interface: "docker0".to_owned(),
        protocol: Protocol::Tcp,
        // DNATed from host port 8080, or straight to a container's own port 8080.
        orig_port: 8080,
        time: crate::testing::NOW,
        dnat,
        established: false,
        orig_dst: None,
    };
    use crate::netfilter::{Fate, forward};
    assert_eq!(forward(&rules, &packet("203.0.113.7", true)), Fate::Through);
    assert_eq!(
        forward(&rules, &packet("203.0.113.7", false)),
        Fate::Dropped,
        "a routed connection to a container port that equals the exposed host port"
    );
    // Trusted sources reach every container, routed or not.
    assert_eq!(forward(&rules, &packet("10.0.0.9", false)), Fate::Through);
}

#[test]
fn forward_ports_are_wanted_for_the_ports_someone_may_reach_and_only_while_enforcing() {
    let ports = vec![
        crate::testing::published("web", "0.0.0.0", 8080, Protocol::Tcp),
        crate::testing::published("db", "0.0.0.0", 5432, Protocol::Tcp),
        crate::testing::published("admin", "127.0.0.1", 9000, Protocol::Tcp),
    ];
    let view = DockerView {
        ports,
        bridges: vec!["docker0".to_owned()],
    };
    let wanted = |text: &str| {
        let config = config(text);
        desired(&Inputs {
            config: &config,
            runtime: &[],
            docker: &view,
            docker_up: true,
            rebuilding: false,
        })
        .forward_ports
    };
    let exposed = "default = \"deny\"\n[[expose]]\nport = \"8080/tcp\"\nfrom = [\"any\"]\n";
    assert_eq!(wanted(exposed), BTreeSet::from([(8080, Protocol::Tcp)]));
    // A trusted source reaches every published port (not one bound to loopback).
    let trusted = "default = \"deny\"\ntrusted = [\"10.0.0.0/8\"]\n";
    assert_eq!(
        wanted(trusted),
        BTreeSet::from([(8080, Protocol::Tcp), (5432, Protocol::Tcp)])
    );
    assert!(
        wanted("default = \"deny\"\n").is_empty(),
        "nobody may reach any"
    );
    assert!(
        wanted("default = \"allow\"\n").is_empty(),
        "allow opens nothing more"
    );
}

/// Audit mode: deny's rules up to the verdict, each published port recorded under its own
/// host port (two host ports leading to one container port are two rules), and nothing that
/// refuses: no mark, no verdict, no start-up guard.
#[test]
fn audit_records_what_deny_would_refuse_and_refuses_nothing() {
    let config = config(
        r#"
        default = "audit"
        trusted = ["10.99.1.0/24"]
        [refused]
        nflog_group = 42
        per_second = 5
        "#,
    );
    let docker = DockerView {
        ports: vec![
            published("web", 8080, "172.17.0.2"),
            published("web", 8081, "172.17.0.2"),
        ],
        bridges: vec!["docker0".to_owned()],
    };
    let planned = plan_of(&config, &docker);
    insta::assert_snapshot!(planned.render());
    assert!(
        planned.rules.iter().all(|rule| rule.table == "mangle"
            && !rule.args.iter().any(|arg| arg == "MARK" || arg == "DROP")),
        "{}",
        planned.render()
    );
    let deny = Config {
        default: config::DefaultPolicy::Deny,
        ..config.clone()
    };
    let denying = plan_of(&deny, &docker);
    let audited: BTreeSet<_> = planned.rules.iter().collect();
    let denied_records: Vec<_> = denying
        .rules
        .iter()
        .filter(|rule| rule.comment() == Some(RECORD_COMMENT))
        .collect();
    assert_eq!(denied_records.len(), 2);
    for rule in denying.rules.iter().filter(|rule| {
        rule.table == "mangle" && rule.chain != "POSTROUTING" && rule.chain != "PREROUTING"
    }) {
        let audit_twin = DirectRule {
            args: rule
                .args
                .iter()
                .map(|arg| arg.replace("dockgate:deny:", "dockgate:audit:"))
                .collect(),
            ..rule.clone()
        };
        if rule.comment() != Some("dockgate:deny") {
            assert!(audited.contains(&audit_twin), "audit lacks {rule}");
        }
    }
}
