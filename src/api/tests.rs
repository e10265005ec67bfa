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
