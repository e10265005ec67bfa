use std::path::Path;

use super::*;
use crate::docker::Protocol;

fn config(text: &str) -> Config {
    Config::parse(text, Path::new("test.toml")).expect("test config parses")
}

fn published(container: &str, host_ip: &str, host_port: u16) -> PublishedPort {
    PublishedPort {
        container: container.to_owned(),
        container_id: format!("{container}-id"),
        host_ip: host_ip.parse().unwrap(),
        host_port,
        protocol: Protocol::Tcp,
        container_ip: Some("172.17.0.2".parse().unwrap()),
        container_port: 80,
    }
}

fn access(text: &str, port: &PublishedPort) -> PortAccess {
    let config = config(text);
    let ports = vec![port.clone()];
    port_access(port, &config, &config.expose, &ports)
}

#[test]
fn each_state_follows_the_policy_for_a_port_on_every_address() {
    let port = published("web", "0.0.0.0", 8080);
    assert_eq!(access("", &port).state, "denied");
    let trusted = access("trusted = [\"10.0.0.0/8\"]\n", &port);
    assert_eq!(
        (trusted.state, trusted.sources),
        ("trusted-only", vec!["10.0.0.0/8".to_owned()])
    );
    let exposed = access(
        "trusted = [\"10.0.0.0/8\"]\n[[expose]]\nport = \"8080/tcp\"\nfrom = [\"203.0.113.7\"]\n",
        &port,
    );
    assert_eq!(
        (exposed.state, exposed.sources),
        (
            "exposed",
            vec!["10.0.0.0/8".to_owned(), "203.0.113.7".to_owned()]
        )
    );
    let open = access(
        "[[expose]]\nport = \"8000-9000/tcp\"\nfrom = [\"any\"]\n",
        &port,
    );
    assert_eq!(open.state, "open");
    assert_eq!(access("default = \"allow\"\n", &port).state, "open");
    // An exposure of another port or of another container does not count.
    assert_eq!(
        access(
            "[[expose]]\nport = \"8080/tcp\"\nfrom = [\"any\"]\ncontainer = \"db\"\n",
            &port
        )
        .state,
        "denied"
    );
}

#[test]
fn a_port_bound_to_loopback_is_denied_whatever_the_policy() {
    for host_ip in ["127.0.0.1", "::1"] {
        let port = published("web", host_ip, 9000);
        for text in [
            "default = \"allow\"\n",
            "trusted = [\"any\"]\n",
            "[[expose]]\nport = \"9000/tcp\"\nfrom = [\"any\"]\n",
        ] {
            assert_eq!(
                access(text, &port),
                PortAccess {
                    state: "denied",
                    sources: Vec::new()
                },
                "{host_ip} with {text}"
            );
        }
    }
}

fn status(text: &str, ports: Vec<PublishedPort>) -> Status {
    Status {
        config: config(text),
        ports,
        ..Status::default()
    }
}

fn port_range(text: &str) -> PortRange {
    Request {
        port: text,
        sources: &["any".to_owned()],
        ..Request::default()
    }
    .check()
    .unwrap()
    .port
}

#[test]
fn explain_names_what_lets_a_source_in_or_why_not() {
    let text =
        "trusted = [\"10.0.0.0/8\"]\n[[expose]]\nport = \"8080/tcp\"\nfrom = [\"203.0.113.7\"]\n";
    let status = status(text, vec![published("web", "0.0.0.0", 8080)]);
    let web = port_range("8080/tcp");
    assert_eq!(
        explain(&status, "10.1.2.3".parse().unwrap(), web),
        (true, "trusted source 10.0.0.0/8".to_owned())
    );
    assert_eq!(
        explain(&status, "203.0.113.7".parse().unwrap(), web),
        (true, "exposure config-1".to_owned())
    );
    let (allowed, why) = explain(&status, "198.51.100.1".parse().unwrap(), web);
    assert!(!allowed && why.contains("verdict drop"), "{why}");
    // Not published at all: the policy still answers for when it is.
    let (allowed, _) = explain(
        &status,
        "203.0.113.7".parse().unwrap(),
        port_range("8081/tcp"),
    );
    assert!(!allowed);
}

#[test]
fn explain_says_a_port_bound_to_loopback_only_is_out_of_reach() {
    let open = "default = \"allow\"\n";
    let local = status(open, vec![published("web", "127.0.0.1", 9000)]);
    let (allowed, why) = explain(&local, "10.1.2.3".parse().unwrap(), port_range("9000/tcp"));
    assert!(!allowed && why.contains("127.0.0.1 only"), "{why}");
    // Also published on every address: the policy decides.
    let both = status(
        open,
        vec![
            published("web", "127.0.0.1", 9000),
            published("web", "0.0.0.0", 9000),
        ],
    );
    let (allowed, _) = explain(&both, "10.1.2.3".parse().unwrap(), port_range("9000/tcp"));
    assert!(allowed);
}
