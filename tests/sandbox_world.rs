//! The sandbox's own instruments: probes over TCP and UDP, IPv4 and IPv6, from several clients
//! and source addresses, must tell open, rejected and dropped apart, or no later test means much.
#![cfg(feature = "sandbox-tests")]

mod common;

use std::time::Duration;

use common::*;

#[test]
fn probes_tell_open_rejected_and_dropped_apart_for_both_protocols_and_families() {
    in_sandbox();
    let _web = Container::httpd("world-web", "-p 18200:80");
    let _udp = Container::udp_echo("world-udp", "-p 18201:9000/udp");
    assert_eq!(
        probe_until(HOST_V4, 18200, "open", Duration::from_secs(5)),
        "open"
    );
    // A new container's IPv6 address passes traffic only after DAD, a second or two.
    assert_eq!(
        probe_until(HOST_V6, 18200, "open", Duration::from_secs(5)),
        "open"
    );
    assert_eq!(probe_udp(HOST_V4, 18201), "open");
    assert!(eventually(Duration::from_secs(5), || probe_udp(
        HOST_V6, 18201
    ) == "open"));
    // Nothing published there: the public zone rejects (over IPv6 no ICMPv6 error reaches the
    // client in the sandbox, so the attempt times out: not open is what can be said).
    assert_eq!(probe(HOST_V4, 18202), "rejected");
    assert_ne!(probe(HOST_V6, 18202), "open");

    // A DROP for client1 only (by hand, as an admin would) gives "dropped" for client1 while
    // client2, on the other external interface, still gets in.
    sh("iptables -I DOCKER-USER -s 10.99.1.2 -j DROP");
    assert_eq!(probe(HOST_V4, 18200), "dropped");
    assert_eq!(probe_udp(HOST_V4, 18201), "dropped");
    let (_, client2, _) = try_sh("sandbox-ctl probe --client 2 10.99.2.1 18200");
    assert_eq!(client2.trim(), "open");
    sh("iptables -D DOCKER-USER -s 10.99.1.2 -j DROP");
    assert_eq!(probe(HOST_V4, 18200), "open");
}

#[test]
fn extra_source_addresses_are_distinct_sources() {
    in_sandbox();
    let _web = Container::httpd("world-src", "-p 18210:80");
    sh("sandbox-ctl add-client-address 1 203.0.113.7");
    sh("sandbox-ctl add-client-address 1 2001:db8::7");
    let from = |source: &str, host: &str| {
        let (_, out, _) = try_sh(&format!("sandbox-ctl probe --from {source} {host} 18210"));
        out.trim().to_owned()
    };
    assert!(eventually(Duration::from_secs(5), || {
        from("203.0.113.7", HOST_V4) == "open"
    }));
    assert!(eventually(Duration::from_secs(5), || {
        from("2001:db8::7", HOST_V6) == "open"
    }));
    sh("iptables -I DOCKER-USER -s 203.0.113.7 -j DROP");
    assert_eq!(from("203.0.113.7", HOST_V4), "dropped");
    assert_eq!(
        probe(HOST_V4, 18210),
        "open",
        "client1's main address is another source"
    );
    sh("iptables -D DOCKER-USER -s 203.0.113.7 -j DROP");
}
