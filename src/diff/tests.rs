use std::path::Path;

use super::*;
use crate::config::Config;
use crate::exposures::listed;
use crate::plan::plan;
use crate::policy::Policy;
use crate::rules::Family;
use std::collections::BTreeSet;

fn plan_for(text: &str) -> Plan {
    let config = Config::parse(text, Path::new("test.toml")).expect("test config parses");
    let policy = Policy::new(&config, &listed(&config, &[]), &[]);
    plan(&policy, &["docker0".to_owned()])
}

fn current(plan: &Plan) -> (Vec<DirectChain>, Vec<DirectRule>) {
    (
        plan.chains
            .iter()
            .chain(&plan.foreign_chains)
            .cloned()
            .collect(),
        plan.rules.iter().cloned().collect(),
    )
}

fn docker_rule() -> DirectRule {
    DirectRule {
        family: Family::Ipv4,
        table: "filter".to_owned(),
        chain: "DOCKER-USER".to_owned(),
        priority: 0,
        args: ["-s", "192.0.2.1", "-j", "DROP"]
            .map(str::to_owned)
            .to_vec(),
    }
}

const POLICY: &str = r#"
    verdict = "reject"
    trusted = ["10.99.1.50"]
    [[expose]]
    port = "8080/tcp"
    from = ["any"]
"#;

#[test]
fn a_second_apply_changes_nothing() {
    let plan = plan_for(POLICY);
    let (chains, rules) = current(&plan);
    assert!(direct(&plan, &chains, &rules, false).is_empty());
}

#[test]
fn from_nothing_the_jump_into_dockgate_goes_in_last() {
    let plan = plan_for(POLICY);
    let changes = direct(&plan, &[], &[], false);
    assert_eq!(changes.add_rules.len(), plan.rules.len());
    let stages: Vec<u8> = changes.add_rules.iter().map(stage).collect();
    assert!(stages.is_sorted(), "{stages:?}");
    let last = changes.add_rules.last().unwrap();
    assert_eq!(last.chain, "FORWARD");
    assert_eq!(
        changes.register_chains.len(),
        2,
        "DOCKER-USER for the reject"
    );
    // Before the first mark, every allow is in.
    let first_mark = changes
        .add_rules
        .iter()
        .position(|rule| stage(rule) == 1)
        .unwrap();
    let allows = changes
        .add_rules
        .iter()
        .filter(|rule| rule.args.last().is_some_and(|arg| arg == "RETURN"))
        .count();
    assert!(
        changes.add_rules[..first_mark]
            .iter()
            .filter(|rule| rule.args.last().is_some_and(|arg| arg == "RETURN"))
            .count()
            == allows
    );
}

#[test]
fn a_changed_exposure_is_added_before_the_old_one_goes() {
    let before = plan_for(POLICY);
    let after = plan_for(&POLICY.replace("8080/tcp", "9090/tcp"));
    let (chains, rules) = current(&before);
    let changes = direct(&after, &chains, &rules, false);
    assert!(changes.add_chains.is_empty() && changes.remove_chains.is_empty());
    let added: Vec<String> = changes.add_rules.iter().map(|r| r.to_string()).collect();
    let removed: Vec<String> = changes.remove_rules.iter().map(|r| r.to_string()).collect();
    assert_eq!(added.len(), 2, "{added:?}");
    assert!(
        added
            .iter()
            .all(|rule| rule.contains("--ctorigdstport 9090"))
    );
    assert_eq!(removed.len(), 2, "{removed:?}");
    assert!(
        removed
            .iter()
            .all(|rule| rule.contains("--ctorigdstport 8080"))
    );
}

/// The position of the first rule carrying `comment` in a list of rules.
fn position_of(rules: &[DirectRule], comment: &str) -> usize {
    rules
        .iter()
        .position(|rule| rule.comment() == Some(comment))
        .unwrap_or_else(|| panic!("no {comment} rule"))
}

#[test]
fn the_start_up_guard_is_never_in_the_kernel_without_the_seen_mark() {
    // The guard turns away every new connection to a local address that lacks the seen mark;
    // alone it would close every published port.
    let plan = plan_for(POLICY);
    let adding = direct(&plan, &[], &[], false).add_rules;
    for family in Family::ALL {
        let of_family: Vec<DirectRule> = adding
            .iter()
            .filter(|rule| rule.family == family)
            .cloned()
            .collect();
        assert!(
            position_of(&of_family, SEEN_COMMENT) < position_of(&of_family, UNJUDGED_COMMENT),
            "{family}: the seen mark goes in first"
        );
    }
    let (chains, rules) = current(&plan);
    let removing = direct(&Plan::default(), &chains, &rules, false).remove_rules;
    assert!(
        position_of(&removing, UNJUDGED_COMMENT) < position_of(&removing, SEEN_COMMENT),
        "the guard comes out first"
    );
}

#[test]
fn rules_of_others_are_never_touched() {
    let plan = plan_for(POLICY);
    let (chains, mut rules) = current(&plan);
    rules.push(docker_rule());
    assert!(direct(&plan, &chains, &rules, false).is_empty());
    let removal = direct(&Plan::default(), &chains, &rules, false);
    assert!(!removal.remove_rules.contains(&docker_rule()));
    assert_eq!(removal.remove_rules.len(), plan.rules.len());
}

#[test]
fn removal_takes_the_jump_out_first_and_keeps_docker_user() {
    let plan = plan_for(POLICY);
    let (chains, rules) = current(&plan);
    let removal = direct(&Plan::default(), &chains, &rules, false);
    assert_eq!(removal.remove_rules.first().unwrap().chain, "FORWARD");
    assert!(
        removal
            .remove_rules
            .iter()
            .map(stage)
            .is_sorted_by(|a, b| a >= b)
    );
    assert_eq!(
        removal.remove_chains.len(),
        4,
        "DOCKGATE and DOCKGATE-JUDGE, both families"
    );
    assert!(
        removal
            .remove_chains
            .iter()
            .all(|chain| chain.chain.starts_with("DOCKGATE"))
    );
}

#[test]
fn the_permanent_layer_keeps_everyone_elses_entries() {
    let plan = plan_for(POLICY);
    let old = plan_for(&POLICY.replace("8080/tcp", "9090/tcp"));
    let (mut chains, mut rules) = current(&old);
    chains.push(DirectChain::new(Family::Ipv4, "filter", "ADMIN"));
    rules.push(docker_rule());
    let found = PermanentDirect::for_tests(chains, rules);
    let planned = permanent(&plan, found).expect("the plan changes it");
    assert!(planned.rules.contains(&docker_rule()));
    assert!(
        planned
            .chains
            .contains(&DirectChain::new(Family::Ipv4, "filter", "ADMIN"))
    );
    assert!(direct(&plan, &planned.chains, &planned.rules, false).is_empty());
    assert!(
        !planned
            .rules
            .iter()
            .any(|rule| rule.args.contains(&"9090".to_owned()))
    );
}

#[test]
fn the_permanent_layer_is_left_alone_when_it_holds_the_plan() {
    let plan = plan_for(POLICY);
    let (chains, rules) = current(&plan);
    assert!(permanent(&plan, PermanentDirect::for_tests(chains, rules)).is_none());
}

#[test]
fn reseating_puts_back_only_the_filter_forward_verdict_rules_already_there() {
    let plan = plan_for(POLICY);
    let (chains, rules) = current(&plan);
    let changes = direct(&plan, &chains, &rules, true);
    assert_eq!(changes.reseat.len(), 4, "two per family");
    assert!(changes.reseat.iter().all(|rule| rule.table == "filter"
        && rule.chain == "FORWARD"
        && rule.comment() == Some(VERDICT_COMMENT)));
    assert!(changes.add_rules.is_empty() && changes.remove_rules.is_empty());
    // Those not there yet are simply added (firewalld puts new ones first anyway).
    let fresh = direct(&plan, &[], &[], true);
    assert!(fresh.reseat.is_empty());
    // With drop there is nothing in filter to reseat.
    let dropping = plan_for(&POLICY.replace("reject", "drop"));
    let (chains, rules) = current(&dropping);
    assert!(direct(&dropping, &chains, &rules, true).is_empty());
}

#[test]
fn cleanup_on_exit_is_turned_off_while_enforcing_and_given_back_after() {
    assert_eq!(
        cleanup(true, "yes", None),
        Cleanup::TurnOff {
            record: Some("yes".to_owned())
        }
    );
    // Someone set it back to yes meanwhile: off again, the first record kept.
    assert_eq!(
        cleanup(true, "True", Some("yes")),
        Cleanup::TurnOff { record: None }
    );
    assert_eq!(cleanup(true, "no", Some("yes")), Cleanup::Keep);
    assert_eq!(cleanup(true, "no", None), Cleanup::Keep);
    assert_eq!(
        cleanup(false, "no", Some("yes")),
        Cleanup::GiveBack("yes".to_owned())
    );
    assert_eq!(cleanup(false, "yes", None), Cleanup::Keep);
    assert!(cleans_up_on_exit("YES") && cleans_up_on_exit("true"));
    assert!(!cleans_up_on_exit("no") && !cleans_up_on_exit("false"));
}

fn zone(target: &str) -> ZoneSettings {
    ZoneSettings {
        target: target.to_owned(),
        services: vec![],
        ports: vec![],
        interfaces: vec!["docker0".to_owned()],
    }
}

#[test]
fn one_reload_covers_everything_that_needs_one() {
    let enforcing = Desired {
        plan: plan_for(POLICY),
        ..Desired::nothing()
    };
    let accept = zone("ACCEPT");
    let nothing_recorded = Originals::default();
    let seen = ZoneSeen {
        permanent: &accept,
        runtime: &accept,
        egress_policy: false,
        recorded: &nothing_recorded,
    };
    // CleanupOnExit must be read again by firewalld.
    let first = prepare(&enforcing, "yes", None, Some(&seen), false, 1);
    assert!(first.reload);
    // Nothing needs one.
    assert!(!prepare(&enforcing, "no", Some("yes"), Some(&seen), false, 1).reload);
    // firewalld 2.x without any direct configuration: the rules go in by a reload.
    assert!(prepare(&enforcing, "no", Some("yes"), Some(&seen), true, 2).reload);
    assert!(!prepare(&enforcing, "no", Some("yes"), Some(&seen), true, 1).reload);
    // A zone target (and the egress policy it needs) changes on reload only.
    let target = Desired {
        zone: config::ZoneSettings {
            target: Some(config::ZoneTarget::Drop),
            ..Default::default()
        },
        ..enforcing.clone()
    };
    let steps = prepare(&target, "no", Some("yes"), Some(&seen), false, 1);
    assert!(steps.reload && steps.zone.egress_policy == Some(true));
    assert_eq!(
        steps.zone.record.as_ref().and_then(|r| r.target.as_deref()),
        Some("ACCEPT"),
        "what was found is recorded first"
    );
    // Removal gives CleanupOnExit back without a reload.
    let removal = prepare(
        &Desired::nothing(),
        "no",
        Some("yes"),
        Some(&seen),
        false,
        2,
    );
    assert_eq!(removal.cleanup, Cleanup::GiveBack("yes".to_owned()));
    assert!(!removal.reload);
}

#[test]
fn zone_services_change_at_run_time_and_in_the_permanent_configuration() {
    let accept = zone("ACCEPT");
    let nothing_recorded = Originals::default();
    let seen = ZoneSeen {
        permanent: &accept,
        runtime: &accept,
        egress_policy: false,
        recorded: &nothing_recorded,
    };
    let settings = config::ZoneSettings {
        services: Some(vec!["dns".to_owned()]),
        ..Default::default()
    };
    let steps = zone_steps(&settings, &seen);
    assert!(!steps.reload);
    assert_eq!(
        steps.runtime.as_ref().and_then(|a| a.services.clone()),
        Some(vec!["dns".to_owned()])
    );
    assert!(steps.runtime.as_ref().is_some_and(|a| a.target.is_none()));
    assert!(steps.permanent.is_some());
    assert_eq!(
        steps.record.as_ref().and_then(|r| r.services.clone()),
        Some(vec![])
    );
}

#[test]
fn with_a_reload_the_permanent_layer_is_written_first_and_nothing_is_left_to_add_after() {
    let desired = Desired {
        plan: plan_for(POLICY),
        ..Desired::nothing()
    };
    // firewalld 2.x without any direct configuration: the first rules go in by a reload.
    let mut seen = Seen {
        runtime_chains: vec![],
        runtime_rules: vec![],
        permanent: None,
        major: 2,
        cleanup_now: "no".to_owned(),
        cleanup_recorded: Some("yes".to_owned()),
        zone: None,
        strict_forward_ports: false,
        forwards: None,
    };
    assert!(reload_needed(&desired, &seen));
    seen.permanent = Some(PermanentDirect::for_tests(vec![], vec![docker_rule()]));
    let steps = runtime_steps(&desired, &seen);
    let Step::WritePermanent(written) = &steps[0] else {
        panic!("{steps:?}");
    };
    assert!(written.rules.contains(&docker_rule()), "others' rules kept");
    assert_eq!(
        steps[1],
        Step::Reload {
            rules_added: desired.plan.rules.len(),
            rules_removed: 0
        }
    );
    assert_eq!(steps.len(), 2, "the reload put everything in: {steps:?}");
    // With firewalld 1.x nothing needs a reload, and the rules go in at run time.
    seen.major = 1;
    assert!(!reload_needed(&desired, &seen));
    let steps = runtime_steps(&desired, &seen);
    assert!(
        steps
            .iter()
            .all(|step| !matches!(step, Step::Reload { .. } | Step::WritePermanent(_)))
    );
    assert_eq!(
        steps
            .iter()
            .filter(|step| matches!(step, Step::AddRule(_)))
            .count(),
        desired.plan.rules.len()
    );
}

fn forward(port: &str) -> ForwardPort {
    ForwardPort {
        port: port.to_owned(),
        protocol: "tcp".to_owned(),
        toport: String::new(),
        toaddr: FORWARD_TO.to_owned(),
    }
}

fn seen_forwards(
    strict: bool,
    zone: &str,
    present: &[ForwardPort],
    recorded: &[(&str, ForwardPort)],
) -> Seen {
    Seen {
        runtime_chains: vec![],
        runtime_rules: vec![],
        permanent: None,
        major: 2,
        cleanup_now: "no".to_owned(),
        cleanup_recorded: Some("yes".to_owned()),
        zone: None,
        strict_forward_ports: strict,
        forwards: Some(ForwardsFound {
            zone: zone.to_owned(),
            runtime: present.to_vec(),
            permanent: present.to_vec(),
            recorded: Forwards {
                ports: recorded
                    .iter()
                    .map(|(zone, port)| ((*zone).to_owned(), port.clone()))
                    .collect(),
            },
        }),
    }
}

#[test]
fn with_strict_forward_ports_each_reachable_port_gets_a_forward_port_once_and_recorded_first() {
    let desired = Desired {
        forward_ports: BTreeSet::from([(8080, crate::docker::Protocol::Tcp)]),
        ..Desired::nothing()
    };
    // The admin's own forward-port of another port is none of dockgate's business.
    let admins = ForwardPort {
        port: "2222".to_owned(),
        protocol: "tcp".to_owned(),
        toport: "22".to_owned(),
        toaddr: "192.168.1.5".to_owned(),
    };
    let steps = forward_steps(
        &desired,
        &seen_forwards(true, "public", std::slice::from_ref(&admins), &[]),
    );
    assert_eq!(
        steps,
        [
            Step::RecordForwards(Some(Forwards {
                ports: BTreeSet::from([("public".to_owned(), forward("8080"))])
            })),
            Step::AddForwardPort(Layer::Runtime, "public".to_owned(), forward("8080")),
            Step::AddForwardPort(Layer::Permanent, "public".to_owned(), forward("8080")),
        ]
    );
    // In place and recorded: nothing to do.
    let done = seen_forwards(
        true,
        "public",
        &[admins.clone(), forward("8080")],
        &[("public", forward("8080"))],
    );
    assert_eq!(forward_steps(&desired, &done), []);
    // The port nobody may reach any more: its forward-port goes, in both layers.
    let steps = forward_steps(&Desired::nothing(), &done);
    assert_eq!(
        steps,
        [
            Step::RemoveForwardPort(Layer::Runtime, "public".to_owned(), forward("8080")),
            Step::RemoveForwardPort(Layer::Permanent, "public".to_owned(), forward("8080")),
            Step::RecordForwards(None),
        ]
    );
    assert!(
        !steps
            .iter()
            .any(|step| format!("{step:?}").contains("2222"))
    );
}

#[test]
fn strict_forward_ports_off_takes_dockgates_forward_ports_back_and_a_zone_change_moves_them() {
    let desired = Desired {
        forward_ports: BTreeSet::from([(8080, crate::docker::Protocol::Tcp)]),
        ..Desired::nothing()
    };
    let off = seen_forwards(
        false,
        "public",
        &[forward("8080")],
        &[("public", forward("8080"))],
    );
    let steps = forward_steps(&desired, &off);
    assert!(steps.iter().all(|step| matches!(
        step,
        Step::RemoveForwardPort(..) | Step::RecordForwards(None)
    )));
    assert_eq!(steps.len(), 3);
    // The outside interface moved to zone external: added there before it goes from public.
    let moved = seen_forwards(true, "external", &[], &[("public", forward("8080"))]);
    let steps = forward_steps(&desired, &moved);
    let added = steps
        .iter()
        .position(|step| matches!(step, Step::AddForwardPort(_, zone, _) if zone == "external"))
        .unwrap();
    let removed = steps
        .iter()
        .position(|step| matches!(step, Step::RemoveForwardPort(_, zone, _) if zone == "public"))
        .unwrap();
    assert!(added < removed, "{steps:?}");
    // Nothing seen (not strict, nothing recorded): nothing read, nothing done.
    let mut none = moved;
    none.forwards = None;
    assert_eq!(forward_steps(&desired, &none), []);
}
