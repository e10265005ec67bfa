//! The applier against the in-memory firewalld: after every single call it makes, no source
//! that neither the old nor the new policy lets in reaches a published port, and firewalld
//! 2.x's flush trap is never sprung. The sandbox tests check the same with real daemons.

use std::future::Future;
use std::net::IpAddr;

use proptest::prelude::*;

use super::*;
use crate::config::Config;
use crate::docker::Protocol;
use crate::exposures::listed;
use crate::firewalld::fake::{Fake, State};
use crate::netfilter::{self, Fate, Packet};
use crate::plan::{self, DockerView};
use crate::policy::{self, Policy};
use crate::rules::DirectRule;
use crate::testing::{config, generated_config, published};
use crate::zones::Binding;

fn block_on<T>(future: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(future)
}

fn view() -> DockerView {
    DockerView {
        ports: vec![
            published("web", "0.0.0.0", 8080, Protocol::Tcp),
            published("web", "::", 8080, Protocol::Tcp),
            published("db", "0.0.0.0", 5432, Protocol::Tcp),
            published("dns", "0.0.0.0", 5353, Protocol::Udp),
            published("range", "0.0.0.0", 9001, Protocol::Tcp),
        ],
        bridges: vec!["docker0".to_owned()],
    }
}

const SOURCES: [&str; 7] = [
    "10.0.0.1",
    "10.0.0.7",
    "10.0.1.9",
    "192.0.2.9",
    "203.0.113.7",
    "fd00::1",
    "2001:db8::7",
];

fn policy_of(config: &Config, view: &DockerView) -> Policy {
    Policy::new(config, &listed(config, &[]), &view.ports)
}

fn desired(config: &Config, view: &DockerView) -> Desired {
    plan::desired(&plan::Inputs {
        config,
        runtime: &[],
        docker: view,
        docker_up: true,
        rebuilding: false,
    })
}

/// Who the policy lets in: (source, port index in the view) pairs.
fn admitted(config: &Config, view: &DockerView) -> Vec<(IpAddr, usize)> {
    let policy = policy_of(config, view);
    probes(view)
        .into_iter()
        .filter(|(source, index)| {
            policy::judge(&policy, None, &view.ports[*index], *source).allowed
        })
        .collect()
}

/// Every source against every published port of its family.
fn probes(view: &DockerView) -> Vec<(IpAddr, usize)> {
    let mut all = Vec::new();
    for source in SOURCES {
        let source: IpAddr = source.parse().unwrap();
        for (index, port) in view.ports.iter().enumerate() {
            if port.host_ip.is_ipv6() == source.is_ipv6() {
                all.push((source, index));
            }
        }
    }
    all
}

fn fate(rules: &[DirectRule], view: &DockerView, (source, index): (IpAddr, usize)) -> Fate {
    let port = &view.ports[index];
    netfilter::forward(
        rules,
        &Packet {
            source,
            in_interface: "eth0".to_owned(),
            out_interface: "docker0".to_owned(),
            protocol: port.protocol,
            orig_port: port.host_port,
            time: crate::testing::NOW,
            dnat: true,
            established: false,
            orig_dst: None,
        },
    )
}

fn applier(fake: Fake) -> Applier<Fake> {
    let dir = std::env::temp_dir().join(format!(
        "dockgate-apply-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    Applier {
        firewall: fake,
        state: StateDir::new(dir),
    }
}

/// Applies `before`, then checks every call on the way to `after`: a connection gets through
/// only if `before` or `after` lets it in, and Docker's rules are never flushed.
fn check_transition(major: u32, before: &Config, after: &Config, view: &DockerView) {
    let applier = applier(Fake::new(major));
    block_on(applier.apply(&desired(before, view))).unwrap();
    let mut allowed = admitted(before, view);
    allowed.extend(admitted(after, view));
    let probe_view = view.clone();
    applier.firewall.check_each_call(move |state: &State| {
        assert!(!state.flushed_docker, "firewalld flushed Docker's rules");
        for probe in probes(&probe_view) {
            let fate = fate(&state.runtime_rules, &probe_view, probe);
            assert!(
                fate != Fate::Through || allowed.contains(&probe),
                "after {:?}: {probe:?} got through, which neither policy allows",
                state.calls.last()
            );
        }
    });
    let want = desired(after, view);
    block_on(applier.apply(&want)).unwrap();
    let state = applier.firewall.state.borrow().clone();
    // And then the kernel and the permanent layer hold exactly the plan, and packets agree
    // with the policy.
    let ours = |rules: &[DirectRule]| -> std::collections::BTreeSet<DirectRule> {
        rules
            .iter()
            .filter(|rule| diff::owns_rule(rule))
            .cloned()
            .collect()
    };
    assert_eq!(ours(&state.runtime_rules), want.plan.rules);
    assert_eq!(ours(&state.permanent_rules), want.plan.rules);
    let admitted_after = admitted(after, view);
    for probe in probes(view) {
        assert_eq!(
            fate(&state.runtime_rules, view, probe) == Fate::Through,
            admitted_after.contains(&probe),
            "{probe:?} in the end"
        );
    }
    assert!(!state.flushed_docker);
}

const BASE: &str = r#"
    trusted = ["10.0.0.0/24", "fd00::/64"]
    [[expose]]
    port = "8080/tcp"
    from = ["203.0.113.7"]
"#;

#[test]
fn adding_removing_and_changing_exposures_never_opens_a_window() {
    let view = view();
    let base = config(BASE);
    let cases = [
        // An exposure added.
        format!("{BASE}\n[[expose]]\nport = \"5432/tcp\"\nfrom = [\"192.0.2.0/24\"]\n"),
        // The exposure removed.
        "trusted = [\"10.0.0.0/24\", \"fd00::/64\"]\n".to_owned(),
        // Moved to another port, and the trusted list narrowed (mixed).
        "trusted = [\"10.0.0.1\"]\n[[expose]]\nport = \"9000-9002/tcp\"\nfrom = [\"203.0.113.7\", \"2001:db8::/32\"]\n".to_owned(),
        // From drop to reject, and only some interfaces outside.
        format!("verdict = \"reject\"\nexternal_interfaces = [\"eth0\"]\n{BASE}"),
        // Nothing enforced any more.
        "default = \"allow\"\n".to_owned(),
    ];
    for major in [1, 2] {
        for case in &cases {
            let after = config(case);
            check_transition(major, &base, &after, &view);
            check_transition(major, &after, &base, &view);
        }
    }
}

#[test]
fn from_nothing_on_firewalld_2_the_rules_go_in_by_one_reload_and_never_by_a_flush() {
    let view = view();
    let want = desired(&config(BASE), &view);
    let applier = applier(Fake::new(2));
    let outcome = block_on(applier.apply(&want)).unwrap();
    let state = applier.firewall.state.borrow().clone();
    assert!(outcome.reloaded);
    assert_eq!(
        state.reloads, 1,
        "CleanupOnExit and the first rules share it"
    );
    assert!(!state.flushed_docker);
    assert_eq!(state.cleanup_on_exit, "no");
    // Removed again, firewalld holds no direct configuration: the next policy goes in by a
    // reload once more, also when CleanupOnExit needs none (the admin set it to no).
    block_on(reconcile_remove(&applier));
    assert!(applier.firewall.state.borrow().runtime_rules.is_empty());
    assert_eq!(applier.firewall.state.borrow().cleanup_on_exit, "yes");
    applier.firewall.state.borrow_mut().cleanup_on_exit = "no".to_owned();
    let outcome = block_on(applier.apply(&want)).unwrap();
    let state = applier.firewall.state.borrow().clone();
    assert!(outcome.reloaded && !state.flushed_docker);
    assert_eq!(state.reloads, 2);
    // firewalld 1.x flushes nothing on a runtime call: no reload is needed there.
    let applier = self::applier(Fake::new(1));
    applier.firewall.state.borrow_mut().cleanup_on_exit = "no".to_owned();
    assert!(!block_on(applier.apply(&want)).unwrap().reloaded);
}

async fn reconcile_remove(applier: &Applier<Fake>) {
    crate::reconcile::remove(applier).await.unwrap();
}

#[test]
fn a_second_apply_makes_no_call_that_changes_anything() {
    let view = view();
    for major in [1, 2] {
        let applier = applier(Fake::new(major));
        let want = desired(&config(&format!("verdict = \"reject\"\n{BASE}")), &view);
        block_on(applier.apply(&want)).unwrap();
        let calls = applier.firewall.state.borrow().calls.len();
        let again = block_on(applier.apply(&want)).unwrap();
        assert_eq!(again.writes, 0, "firewalld {major}");
        assert_eq!(applier.firewall.state.borrow().calls.len(), calls);
    }
}

#[test]
fn bridges_are_bound_after_the_rules_and_only_when_asked() {
    let view = view();
    let applier = applier(Fake::new(1));
    let mut want = desired(
        &config(&format!("{BASE}\n[zone]\nbind = \"internal\"\n")),
        &view,
    );
    assert_eq!(
        want.bridges,
        Binding::Bind {
            zone: "internal".to_owned(),
            bridges: vec!["docker0".to_owned()]
        }
    );
    want.bridges = Binding::Leave;
    block_on(applier.apply(&want)).unwrap();
    assert!(
        applier.firewall.state.borrow().active["docker"]
            .interfaces
            .contains(&"docker0".to_owned())
    );
    want.bridges = Binding::Bind {
        zone: "internal".to_owned(),
        bridges: vec!["docker0".to_owned()],
    };
    let outcome = block_on(applier.apply(&want)).unwrap();
    assert_eq!(outcome.bridges_moved, 1);
    let state = applier.firewall.state.borrow().clone();
    assert_eq!(state.calls.last().unwrap(), "move docker0 to internal");
    drop(state);
    want.bridges = Binding::Return;
    block_on(applier.apply(&want)).unwrap();
    assert!(
        applier.firewall.state.borrow().active["docker"]
            .interfaces
            .contains(&"docker0".to_owned())
    );
}

#[test]
fn reseating_keeps_the_verdict_in_place_throughout() {
    let view = view();
    let applier = applier(Fake::new(1));
    let rejecting = config(&format!("verdict = \"reject\"\n{BASE}"));
    let mut want = desired(&rejecting, &view);
    block_on(applier.apply(&want)).unwrap();
    let allowed = admitted(&rejecting, &view);
    let probe_view = view.clone();
    applier.firewall.check_each_call(move |state: &State| {
        for probe in probes(&probe_view) {
            let fate = fate(&state.runtime_rules, &probe_view, probe);
            assert!(
                fate != Fate::Through || allowed.contains(&probe),
                "{probe:?}"
            );
        }
    });
    want.reseat_verdict = true;
    let outcome = block_on(applier.apply(&want)).unwrap();
    assert_eq!(outcome.writes, 8, "out and in again, two rules per family");
    let state = applier.firewall.state.borrow().clone();
    // The reseated rules are the newest: firewalld inserted them first in filter FORWARD.
    let newest: Vec<&DirectRule> = state.runtime_rules.iter().rev().take(4).collect();
    assert!(
        newest
            .iter()
            .all(|rule| rule.table == "filter" && rule.chain == "FORWARD")
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn generated_policy_changes_never_open_a_window(
        before in generated_config(),
        after in generated_config(),
        major in 1u32..=2,
    ) {
        check_transition(major, &before, &after, &view());
    }
}
