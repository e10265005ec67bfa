use proptest::prelude::*;

use super::*;
use crate::docker::Protocol;
use crate::exposures::{Stored, listed};
use crate::netfilter::{self, Fate, Packet};
use crate::plan;
use crate::testing::{self, config, generated_config};

fn published(container: &str, host_ip: &str, host_port: u16) -> PublishedPort {
    testing::published(container, host_ip, host_port, Protocol::Tcp)
}

fn policy(text: &str, ports: &[PublishedPort]) -> Policy {
    let config = config(text);
    Policy::new(&config, &listed(&config, &[]), ports)
}

fn access_of(text: &str, port: &PublishedPort) -> (State, Vec<String>) {
    let found = access(&policy(text, std::slice::from_ref(port)), None, port);
    (found.state, found.sources)
}

fn range(text: &str) -> PortRange {
    text.parse().unwrap()
}

fn address(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn each_state_follows_the_policy() {
    let port = published("web", "0.0.0.0", 8080);
    assert_eq!(access_of("", &port), (State::Denied, vec![]));
    assert_eq!(
        access_of("trusted = [\"10.0.0.0/8\"]\n", &port),
        (State::TrustedOnly, vec!["10.0.0.0/8".to_owned()])
    );
    assert_eq!(
        access_of(
            "trusted = [\"10.0.0.0/8\"]\n[[expose]]\nport = \"8080/tcp\"\nfrom = [\"203.0.113.7\"]\n",
            &port
        ),
        (
            State::Exposed,
            vec!["10.0.0.0/8".to_owned(), "203.0.113.7".to_owned()]
        )
    );
    let open = "[[expose]]\nport = \"8000-9000/tcp\"\nfrom = [\"any\"]\n";
    assert_eq!(access_of(open, &port).0, State::Open);
    assert_eq!(
        access_of("trusted = [\"0.0.0.0/0\"]\n", &port).0,
        State::Open
    );
    assert_eq!(access_of("default = \"allow\"\n", &port).0, State::Open);
    // An exposure of another port, or bound to a container that does not publish it, does
    // not count.
    for other in [
        "[[expose]]\nport = \"8081/tcp\"\nfrom = [\"any\"]\n",
        "[[expose]]\nport = \"8080/udp\"\nfrom = [\"any\"]\n",
        "[[expose]]\nport = \"8080/tcp\"\nfrom = [\"any\"]\ncontainer = \"db\"\n",
    ] {
        assert_eq!(access_of(other, &port).0, State::Denied, "{other}");
    }
}

#[test]
fn a_port_lists_only_the_sources_of_its_own_family() {
    let text = "trusted = [\"10.0.0.0/8\", \"fd00::/8\"]\n";
    assert_eq!(
        access_of(text, &published("web", "::", 8080)),
        (State::TrustedOnly, vec!["fd00::/8".to_owned()])
    );
    // IPv4 sources only: nobody reaches the IPv6 port, and ListPorts says so.
    assert_eq!(
        access_of(
            "trusted = [\"10.0.0.0/8\"]\n",
            &published("web", "::", 8080)
        ),
        (State::Denied, vec![])
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
                access_of(text, &port),
                (State::Denied, vec![]),
                "{host_ip} {text}"
            );
            let source = if host_ip.contains(':') {
                "fd00::1"
            } else {
                "10.1.2.3"
            };
            let judged = judge(&policy(text, &[]), None, &port, address(source));
            assert!(!judged.allowed);
            assert!(
                judged
                    .reason
                    .to_string()
                    .contains(&format!("{host_ip} only"))
            );
        }
    }
}

fn zones(default_zone: &str, zones: &[(&str, ZoneView)]) -> HostZones {
    HostZones {
        default_zone: default_zone.to_owned(),
        zones: zones
            .iter()
            .map(|(name, view)| ((*name).to_owned(), view.clone()))
            .collect(),
        strict_forward_ports: false,
        forwarded: vec![],
    }
}

fn zone_opening(ports: &[&str]) -> ZoneView {
    ZoneView {
        target: "default".to_owned(),
        open: ports
            .iter()
            .map(|port| (range(port), format!("port {port}")))
            .collect(),
        ..ZoneView::default()
    }
}

#[test]
fn a_port_docker_proxy_serves_is_judged_by_the_zone_not_by_dockgate() {
    let proxied = PublishedPort {
        container_ip: None,
        ..published("web", "::", 8080)
    };
    // dockgate's policy would let everyone in; the zone does not open the port.
    let everyone = policy("trusted = [\"any\"]\n", &[]);
    let closed = zones("public", &[("public", zone_opening(&["22/tcp"]))]);
    let found = access(&everyone, Some(&closed), &proxied);
    assert_eq!(
        (found.state, found.judged_by.as_str()),
        (State::Denied, "zone public")
    );
    let judged = judge(&everyone, Some(&closed), &proxied, address("fd99:1::2"));
    assert!(!judged.allowed);
    assert_eq!(
        judged.reason.to_string(),
        "served by docker-proxy on the host: zone public does not open the port"
    );
    // The zone opens it: open to everyone, whatever dockgate's policy.
    let denying = policy("", &[]);
    let open = zones("public", &[("public", zone_opening(&["8000-8100/tcp"]))]);
    assert_eq!(access(&denying, Some(&open), &proxied).state, State::Open);
    let judged = judge(&denying, Some(&open), &proxied, address("fd99:1::2"));
    assert!(judged.allowed, "{}", judged.reason);
    assert!(judged.reason.to_string().contains("port 8000-8100/tcp"));
    // A source bound to another zone is judged by that zone.
    let mut trusted = zone_opening(&[]);
    trusted.target = "ACCEPT".to_owned();
    trusted.sources = vec!["fd99:2::/64".parse().unwrap()];
    let both = zones(
        "public",
        &[("public", zone_opening(&[])), ("trusted", trusted)],
    );
    let found = access(&denying, Some(&both), &proxied);
    assert_eq!(
        (found.state, found.sources.clone()),
        (State::Exposed, vec!["fd99:2::/64".to_owned()])
    );
    assert!(judge(&denying, Some(&both), &proxied, address("fd99:2::5")).allowed);
    assert!(!judge(&denying, Some(&both), &proxied, address("fd99:1::5")).allowed);
    // The zone of the external interface, when one is configured and bound.
    let external = config("external_interfaces = [\"eth1\"]\n");
    let via_eth1 = Policy::new(&external, &[], &[]);
    let mut internal = zone_opening(&["8080/tcp"]);
    internal.interfaces = vec!["eth1".to_owned()];
    let bound = zones(
        "public",
        &[("public", zone_opening(&[])), ("internal", internal)],
    );
    let found = access(&via_eth1, Some(&bound), &proxied);
    assert_eq!(
        (found.state, found.judged_by.as_str()),
        (State::Open, "zone internal")
    );
}

#[test]
fn strict_forward_ports_refuses_what_docker_forwards_unless_a_forward_port_names_it() {
    let mut strict = zones("public", &[("public", zone_opening(&[]))]);
    strict.strict_forward_ports = true;
    let port = published("web", "0.0.0.0", 8080);
    let open = policy("default = \"allow\"\n", &[]);
    assert_eq!(access(&open, Some(&strict), &port).state, State::Denied);
    let judged = judge(&open, Some(&strict), &port, address("10.0.0.1"));
    assert_eq!(judged.reason, Reason::StrictForwardPorts);
    // A forward-port of 8080 (dockgate's, or the admin's), in any zone: the policy decides.
    strict.forwarded = vec![(8000, 8080)];
    assert_eq!(access(&open, Some(&strict), &port).state, State::Open);
    let exposed = policy(
        "[[expose]]\nport = \"8080/tcp\"\nfrom = [\"203.0.113.7\"]\n",
        std::slice::from_ref(&port),
    );
    assert!(judge(&exposed, Some(&strict), &port, address("203.0.113.7")).allowed);
    assert!(!judge(&exposed, Some(&strict), &port, address("10.0.0.1")).allowed);
    let other = published("db", "0.0.0.0", 8081);
    assert_eq!(access(&open, Some(&strict), &other).state, State::Denied);
}

#[test]
fn explain_names_what_lets_a_source_in_or_why_not() {
    let text =
        "trusted = [\"10.0.0.0/8\"]\n[[expose]]\nport = \"8080/tcp\"\nfrom = [\"203.0.113.7\"]\n";
    let ports = vec![published("web", "0.0.0.0", 8080)];
    let policy = policy(text, &ports);
    let explained = |source: &str, port: &str| {
        let judged = explain(&policy, None, &ports, address(source), range(port));
        (judged.allowed, judged.reason.to_string())
    };
    assert_eq!(
        explained("10.1.2.3", "8080/tcp"),
        (true, "trusted source 10.0.0.0/8".to_owned())
    );
    assert_eq!(
        explained("203.0.113.7", "8080/tcp"),
        (true, "exposure config-1".to_owned())
    );
    let (allowed, why) = explained("198.51.100.1", "8080/tcp");
    assert!(!allowed && why.contains("verdict drop"), "{why}");
    // Not published: nothing to reach now, and what the policy would say once it is.
    let (allowed, why) = explained("203.0.113.7", "8081/tcp");
    assert!(!allowed);
    assert_eq!(
        why,
        "no container publishes 8081/tcp for IPv4 now (once one does: no trusted source and \
         no exposure of 8081/tcp lets it in: verdict drop)"
    );
    // Published for IPv4 only: an IPv6 source reaches nothing.
    let (allowed, why) = explained("fd00::1", "8080/tcp");
    assert!(
        !allowed && why.starts_with("no container publishes 8080/tcp for IPv6"),
        "{why}"
    );
}

#[test]
fn explain_judges_each_host_address_when_they_differ() {
    let ports = vec![
        published("web", "127.0.0.1", 9000),
        published("web", "10.99.2.1", 9000),
    ];
    let policy = policy("trusted = [\"10.0.0.0/8\"]\n", &ports);
    let judged = explain(
        &policy,
        None,
        &ports,
        address("10.1.2.3"),
        range("9000/tcp"),
    );
    assert!(judged.allowed);
    let text = judged.reason.to_string();
    assert!(
        text.contains("127.0.0.1:9000/tcp denied: 9000/tcp is published on 127.0.0.1 only")
            && text.contains("10.99.2.1:9000/tcp allowed: trusted source 10.0.0.0/8"),
        "{text}"
    );
    // All the same: one answer.
    let local = vec![published("web", "127.0.0.1", 9000)];
    let judged = explain(
        &policy,
        None,
        &local,
        address("10.1.2.3"),
        range("9000/tcp"),
    );
    assert_eq!(
        judged.reason.to_string(),
        "9000/tcp is published on 127.0.0.1 only: no other host can reach it"
    );
}

#[test]
fn grants_come_in_the_order_the_judge_checks_them() {
    let text = "trusted = [\"10.0.0.0/8\"]\n[[expose]]\nport = \"8080/tcp\"\nfrom = [\"any\"]\ncontainer = \"web\"\n[[expose]]\nport = \"9000/tcp\"\nfrom = [\"any\"]\ncontainer = \"db\"\n";
    let ports = vec![published("web", "0.0.0.0", 8080)];
    let policy = policy(text, &ports);
    let grants: Vec<&Grant> = policy.allows.iter().map(|allow| &allow.grant).collect();
    assert_eq!(
        grants,
        [&Grant::Trusted, &Grant::Exposure("config-1".to_owned())],
        "config-2's container publishes nothing: not in force"
    );
}

// The planned rules themselves, run through the netfilter simulator, against the evaluator:
// the plan and every answer dockgate gives are one truth.

fn generated_ports() -> impl Strategy<Value = Vec<PublishedPort>> {
    let row = (
        prop::sample::select(vec!["web", "db", "dns"]),
        prop::sample::select(vec!["0.0.0.0", "::", "10.99.2.1", "127.0.0.1"]),
        prop::sample::select(vec![8080u16, 8081, 5353, 9001, 443]),
        prop::sample::select(vec![Protocol::Tcp, Protocol::Udp]),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(container, host_ip, host_port, protocol, routed)| {
            let port = PublishedPort {
                protocol,
                ..published(container, host_ip, host_port)
            };
            if !routed || port.host_ip.is_loopback() {
                return port;
            }
            // Gateway mode routed: reached at the container's own address and port.
            let address: IpAddr = if port.host_ip.is_ipv6() {
                "fd00:30::2".parse().unwrap()
            } else {
                "172.30.10.2".parse().unwrap()
            };
            PublishedPort {
                host_ip: address,
                container_ip: Some(address),
                routed: true,
                ..port
            }
        });
    prop::collection::vec(row, 1..6)
}

const SOURCES: [&str; 9] = [
    "10.0.0.1",
    "10.0.0.7",
    "10.0.1.9",
    "192.0.2.9",
    "203.0.113.7",
    "198.51.100.4",
    "fd00::1",
    "fd00::9",
    "2001:db8::7",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn the_planned_rules_do_what_the_evaluator_says(
        config in generated_config(),
        ports in generated_ports(),
        bridge in prop::sample::select(vec!["docker0", "br-0123456789ab"]),
    ) {
        let policy = Policy::new(&config, &listed(&config, &[]), &ports);
        let planned = plan::plan(&policy, &["docker0".to_owned(), "br-0123456789ab".to_owned()]);
        let rules: Vec<_> = planned.rules.iter().cloned().collect();
        for port in ports
            .iter()
            .filter(|port| matches!(serving(port), Serving::Dnat | Serving::Routed))
        {
            for source in SOURCES.iter().map(|source| address(source)) {
                if source.is_ipv6() != port.host_ip.is_ipv6() {
                    continue;
                }
                let judged = judge(&policy, None, port, source);
                // A routed port is reached at the container's own address, without DNAT.
                let packet = Packet {
                    source,
                    in_interface: "eth0".to_owned(),
                    out_interface: bridge.to_owned(),
                    protocol: port.protocol,
                    orig_port: port.host_port,
                    time: testing::NOW,
                    dnat: !port.routed,
                    established: false,
                    orig_dst: port.routed.then_some(port.host_ip),
                };
                let (trace, logged) = netfilter::forward_logged(&rules, &packet);
                prop_assert_eq!(
                    trace == Fate::Through, judged.allowed,
                    "{} to {:?}: {} vs {:?}\n{}", source, port, judged.reason, trace, planned.render()
                );
                // Recorded exactly when "deny" refuses it (or would, auditing), once, under
                // the port the client connected to.
                let recorded = match judged.reason {
                    Reason::Denied { .. } => vec![format!("dockgate:deny:{}/{}", port.host_port, port.protocol)],
                    Reason::Audited { .. } => vec![format!("dockgate:audit:{}/{}", port.host_port, port.protocol)],
                    _ => Vec::new(),
                };
                prop_assert_eq!(logged, recorded, "{} to {:?}: {}", source, port, judged.reason);
                // The grant the evaluator names has a rule that lets the packet through.
                if let Reason::Granted { grant, .. } = &judged.reason {
                    let comment = match grant {
                        Grant::Trusted => "dockgate:trusted".to_owned(),
                        Grant::Exposure(id) => format!("dockgate:expose:{id}"),
                    };
                    let granting = netfilter::matching(&rules, &packet, "mangle", plan::JUDGE_CHAIN);
                    prop_assert!(
                        granting.contains(&comment),
                        "{} to {:?}: {} but only {:?} match", source, port, comment, granting
                    );
                }
                if let Reason::Denied { verdict, .. } = judged.reason {
                    let expected = match (verdict, port.protocol) {
                        (Verdict::Drop, _) => Fate::Dropped,
                        (Verdict::Reject, Protocol::Tcp) => Fate::Rejected("tcp-reset".to_owned()),
                        (Verdict::Reject, _) => Fate::Rejected("icmp-port-unreachable".to_owned()),
                    };
                    prop_assert_eq!(trace, expected);
                }
                // ListPorts says the same for every source at once.
                let listed = access(&policy, None, port);
                prop_assert_eq!(
                    listed.audited,
                    config.default == DefaultPolicy::Audit && listed.state == State::Open
                        && access(&Policy { default: DefaultPolicy::Deny, ..policy.clone() }, None, port).state != State::Open
                );
                let in_list = listed.state == State::Open
                    || listed.sources.iter().any(|text| {
                        text.parse::<Source>().is_ok_and(|listed| source_contains(&listed, source))
                    });
                prop_assert_eq!(in_list, judged.allowed, "ListPorts for {} to {:?}: {:?}", source, port, listed);
            }
        }
    }
}

/// Runtime exposures until removed or ending 30 s, 60 s or an hour after NOW, made at NOW.
fn generated_runtime() -> impl Strategy<Value = Stored> {
    let exposure = (
        prop::sample::select(vec!["8080/tcp", "8081/tcp", "9000-9002/tcp", "5353/udp"]),
        prop::sample::select(vec![
            "10.0.0.1",
            "10.0.0.0/24",
            "203.0.113.7",
            "fd00::1",
            "any",
        ]),
        prop::sample::select(vec![0u64, 30, 60, 3600]),
    );
    prop::collection::vec(exposure, 0..4).prop_map(|exposures| {
        let mut stored = Stored::default();
        for (port, source, ttl) in exposures {
            let exposure = crate::exposures::Request {
                port,
                sources: &[source.to_owned()],
                ttl_seconds: ttl,
                ..Default::default()
            }
            .check()
            .unwrap();
            stored = stored.with(exposure, ttl, 1000, testing::NOW).0;
        }
        stored
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// The rules planned now go on judging like the evaluator as time passes without a new
    /// plan (dockgated stopped): a time-limited exposure's rules end it themselves.
    #[test]
    fn the_rules_end_time_limited_exposures_by_themselves(
        config in generated_config(),
        ports in generated_ports(),
        stored in generated_runtime(),
    ) {
        let planned_at = stored.expire(testing::NOW).0;
        let policy = Policy::new(&config, &listed(&config, planned_at.all()), &ports);
        let planned = plan::plan(&policy, &["docker0".to_owned()]);
        let rules: Vec<_> = planned.rules.iter().cloned().collect();
        for later in [0, 29, 30, 59, 60, 3599, 3600, 86_400] {
            let time = testing::NOW + later;
            let then = Policy::new(&config, &listed(&config, stored.expire(time).0.all()), &ports);
            for port in ports.iter().filter(|port| serving(port) == Serving::Dnat) {
                for source in SOURCES.iter().map(|source| address(source)) {
                    if source.is_ipv6() != port.host_ip.is_ipv6() {
                        continue;
                    }
                    let packet = Packet {
                        source,
                        in_interface: "eth0".to_owned(),
                        out_interface: "docker0".to_owned(),
                        protocol: port.protocol,
                        orig_port: port.host_port,
                        time,
                        dnat: true,
                        established: false,
                        orig_dst: None,
                    };
                    let judged = judge(&then, None, port, source);
                    prop_assert_eq!(
                        netfilter::forward(&rules, &packet) == Fate::Through, judged.allowed,
                        "{} to {:?}, {} s later: {}\n{}", source, port, later, judged.reason, planned.render()
                    );
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// With on_revoke = "cut" the rules judge every later packet of a connection from outside
    /// like its first (a TCP one that is refused gets a reset, ending the session); with
    /// "keep", established connections are never judged.
    #[test]
    fn with_cut_every_packet_of_a_connection_is_judged_like_its_first(
        config in generated_config(),
        ports in generated_ports(),
        cut in any::<bool>(),
    ) {
        let mut config = config;
        config.on_revoke = if cut { OnRevoke::Cut } else { OnRevoke::Keep };
        let policy = Policy::new(&config, &listed(&config, &[]), &ports);
        let rules: Vec<_> = plan::plan(&policy, &["docker0".to_owned()]).rules.into_iter().collect();
        for port in ports.iter().filter(|port| serving(port) == Serving::Dnat) {
            for source in SOURCES.iter().map(|source| address(source)) {
                if source.is_ipv6() != port.host_ip.is_ipv6() {
                    continue;
                }
                let packet = Packet {
                    source,
                    in_interface: "eth0".to_owned(),
                    out_interface: "docker0".to_owned(),
                    protocol: port.protocol,
                    orig_port: port.host_port,
                    time: testing::NOW,
                    dnat: true,
                    established: true,
                    orig_dst: None,
                };
                let fate = netfilter::forward(&rules, &packet);
                let allowed = judge(&policy, None, port, source).allowed;
                let expected = if !cut || allowed {
                    Fate::Through
                } else if port.protocol == Protocol::Tcp {
                    Fate::Rejected("tcp-reset".to_owned())
                } else if config.verdict == Verdict::Reject {
                    Fate::Rejected("icmp-port-unreachable".to_owned())
                } else {
                    Fate::Dropped
                };
                prop_assert_eq!(fate, expected, "{} to {:?}, cut {}", source, port, cut);
            }
        }
    }
}

#[test]
fn a_routed_port_is_named_by_its_container_and_its_own_port_never_by_a_host_port() {
    let routed_address: IpAddr = "172.30.10.2".parse().unwrap();
    let routed = PublishedPort {
        host_ip: routed_address,
        container_ip: Some(routed_address),
        routed: true,
        ..published("web", "0.0.0.0", 80)
    };
    let host_port = published("db", "0.0.0.0", 80);
    let ports = vec![routed.clone(), host_port.clone()];
    let bound = policy(
        "[[expose]]\nport = \"80/tcp\"\ncontainer = \"web\"\nfrom = [\"203.0.113.7\"]\n",
        &ports,
    );
    assert!(judge(&bound, None, &routed, address("203.0.113.7")).allowed);
    assert!(!judge(&bound, None, &routed, address("198.51.100.4")).allowed);
    assert!(
        !judge(&bound, None, &host_port, address("203.0.113.7")).allowed,
        "web publishes 80 only routed: db's host port 80 is not named"
    );
    let host = policy("[[expose]]\nport = \"80/tcp\"\nfrom = [\"any\"]\n", &ports);
    assert_eq!(access(&host, None, &host_port).state, State::Open);
    assert_eq!(
        access(&host, None, &routed).state,
        State::Denied,
        "an exposure without a container names a host port, never a routed one"
    );
    let trusted = policy("trusted = [\"10.0.0.0/8\"]\n", &ports);
    assert_eq!(access(&trusted, None, &routed).state, State::TrustedOnly);
}
