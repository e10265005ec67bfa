use std::path::Path;

use super::*;
use crate::config::Config;
use crate::plan::{DockerView, config_exposure_ids, identify, plan};
use crate::rules::Family;

fn plan_for(text: &str) -> Plan {
    let config = Config::parse(text, Path::new("test.toml")).expect("test config parses");
    let ids = config_exposure_ids(&config);
    let exposures = identify(&ids, &config);
    let docker = DockerView {
        ports: Vec::new(),
        bridges: vec!["docker0".to_owned()],
    };
    plan(&config, &exposures, &docker)
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
    assert!(diff(&plan, &chains, &rules).is_empty());
}

#[test]
fn from_nothing_the_jump_into_dockgate_goes_in_last() {
    let plan = plan_for(POLICY);
    let changes = diff(&plan, &[], &[]);
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
    let changes = diff(&after, &chains, &rules);
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
    let adding = diff(&plan, &[], &[]).add_rules;
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
    let removing = diff(&Plan::default(), &chains, &rules).remove_rules;
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
    assert!(diff(&plan, &chains, &rules).is_empty());
    let removal = diff(&Plan::default(), &chains, &rules);
    assert!(!removal.remove_rules.contains(&docker_rule()));
    assert_eq!(removal.remove_rules.len(), plan.rules.len());
}

#[test]
fn removal_takes_the_jump_out_first_and_keeps_docker_user() {
    let plan = plan_for(POLICY);
    let (chains, rules) = current(&plan);
    let removal = diff(&Plan::default(), &chains, &rules);
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
    let permanent = PermanentDirect::for_tests(chains, rules);
    let planned = planned_permanent(permanent, &plan);
    assert!(planned.rules.contains(&docker_rule()));
    assert!(
        planned
            .chains
            .contains(&DirectChain::new(Family::Ipv4, "filter", "ADMIN"))
    );
    assert!(diff(&plan, &planned.chains, &planned.rules).is_empty());
    assert!(
        !planned
            .rules
            .iter()
            .any(|rule| rule.args.contains(&"9090".to_owned()))
    );
}
