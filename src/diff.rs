//! The decisions of an apply, pure: from what dockgate wants ([`Desired`]) and what firewalld
//! reports, the calls that close the gap, in an order that never lets a denied connection
//! through. The applier (`apply.rs`) only reads firewalld and makes these calls.
//!
//! Both layers of the direct configuration are kept equal to the plan. The runtime layer is
//! what is in the kernel now; the permanent layer is what firewalld puts back by itself on
//! every start and reload, before it emits `Reloaded` and before Docker restores its DNAT, so
//! a reload has no window to cover.

use std::collections::{BTreeMap, BTreeSet};

use crate::config;
use serde::{Deserialize, Serialize};

use crate::firewalld::{ActiveZone, ForwardPort, Layer, PermanentDirect, ZoneAccess, ZoneSettings};
pub use crate::plan::Desired;
use crate::plan::{
    ENTRY_CHAIN, JUDGE_CHAIN, MARKER, Plan, SEEN_COMMENT, UNJUDGED_COMMENT, VERDICT_COMMENT,
};
use crate::rules::{DirectChain, DirectRule};
use crate::zones::{self, Binding, Bound, Originals};

/// Whether a CleanupOnExit value (as firewalld.conf spells it) means firewalld removes every
/// rule when it stops.
pub fn cleans_up_on_exit(value: &str) -> bool {
    matches!(value.to_ascii_lowercase().as_str(), "yes" | "true")
}

/// What to do with firewalld.conf's CleanupOnExit.
///
/// With "yes" (the default of Debian's and RHEL's firewalld.conf), a graceful firewalld stop
/// or restart takes every direct rule out of the kernel and leaves published ports open until
/// firewalld is up again: 57-67 of 1200 denied attempts got through in the sandbox. With "no",
/// firewalld leaves its rules in place when it stops and replaces them when it starts: 0 got
/// through. So while dockgate enforces a policy, CleanupOnExit is off; the admin's value is
/// recorded and given back when there is nothing left to enforce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cleanup {
    Keep,
    /// Set "no"; record the admin's value first when it is not recorded yet.
    TurnOff {
        record: Option<String>,
    },
    /// Write the recorded value back and forget it.
    GiveBack(String),
}

pub fn cleanup(enforcing: bool, current: &str, recorded: Option<&str>) -> Cleanup {
    match recorded {
        _ if enforcing && cleans_up_on_exit(current) => Cleanup::TurnOff {
            record: recorded.is_none().then(|| current.to_owned()),
        },
        Some(original) if !enforcing => Cleanup::GiveBack(original.to_owned()),
        _ => Cleanup::Keep,
    }
}

/// Zone docker as firewalld reports it, with dockgate's record of what it found there.
#[derive(Debug, Clone)]
pub struct ZoneSeen<'a> {
    pub permanent: &'a ZoneSettings,
    pub runtime: &'a ZoneSettings,
    pub egress_policy: bool,
    pub recorded: &'a Originals,
}

/// The calls that make zone docker's host access what the config asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZoneSteps {
    /// The record of what was found, to store before any change.
    pub record: Option<Originals>,
    pub permanent: Option<ZoneAccess>,
    /// Services and ports at run time (needless when firewalld reloads).
    pub runtime: Option<ZoneAccess>,
    /// Add (true) or remove (false) the egress policy.
    pub egress_policy: Option<bool>,
    /// A target or a policy changes only through the permanent configuration and a reload.
    pub reload: bool,
    /// The record to keep once the changes are made (None: delete it).
    pub keep: Option<Option<Originals>>,
}

pub fn zone_steps(settings: &config::ZoneSettings, seen: &ZoneSeen<'_>) -> ZoneSteps {
    let (before, after) = zones::records(settings, seen.recorded, seen.permanent);
    let desired = zones::desired_access(settings, &before);
    let permanent = zones::access_changes(&desired, seen.permanent);
    let runtime = zones::access_changes(&desired, seen.runtime);
    let egress = zones::egress_needed(&desired);
    let egress_policy = (egress != seen.egress_policy).then_some(egress);
    ZoneSteps {
        record: (&before != seen.recorded).then(|| before.clone()),
        permanent: (!permanent.is_empty()).then_some(permanent),
        reload: runtime.target.is_some() || egress_policy.is_some(),
        runtime: (runtime.services.is_some() || runtime.ports.is_some()).then_some(ZoneAccess {
            target: None,
            ..runtime
        }),
        egress_policy,
        keep: (after != before).then(|| (after != Originals::default()).then_some(after)),
    }
}

/// What goes before the rules: CleanupOnExit, zone docker's settings, and whether firewalld
/// must reload (then the permanent direct layer is written first, so the reload itself puts
/// the whole plan into the kernel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepare {
    pub cleanup: Cleanup,
    pub zone: ZoneSteps,
    pub reload: bool,
}

/// `runtime_direct_empty`: firewalld holds no runtime direct configuration at all; `major`
/// is firewalld's major version (asked only then).
pub fn prepare(
    desired: &Desired,
    cleanup_now: &str,
    cleanup_recorded: Option<&str>,
    zone: Option<&ZoneSeen<'_>>,
    runtime_direct_empty: bool,
    major: u32,
) -> Prepare {
    let cleanup = cleanup(desired.enforcing(), cleanup_now, cleanup_recorded);
    // Without zone docker (Docker never ran with firewalld) there is nothing to set.
    let zone = zone
        .map(|seen| zone_steps(&desired.zone, seen))
        .unwrap_or_default();
    // firewalld 2.x flushes every iptables table, Docker's rules included, on the first
    // runtime direct call while it holds no direct configuration at all; then the plan goes
    // in through the permanent layer and one reload, which flushes before it emits
    // `Reloaded`: Docker rebuilds its rules on that signal.
    let bootstrap = runtime_direct_empty && desired.enforcing() && major >= 2;
    // firewalld reads CleanupOnExit at start and reload only.
    let cleanup_needs_reload = matches!(cleanup, Cleanup::TurnOff { .. });
    Prepare {
        reload: bootstrap || cleanup_needs_reload || zone.reload,
        cleanup,
        zone,
    }
}

/// What firewalld and dockgate's state dir hold, read once by the applier before the runtime
/// phase: the steps are chosen from it alone.
#[derive(Debug, Clone)]
pub struct Seen {
    pub runtime_chains: Vec<DirectChain>,
    pub runtime_rules: Vec<DirectRule>,
    /// The permanent direct configuration, written first when firewalld must reload: read
    /// only then (see [`reload_needed`]), as it costs firewalld time in proportion to its
    /// rules.
    pub permanent: Option<PermanentDirect>,
    /// firewalld's major version.
    pub major: u32,
    pub cleanup_now: String,
    pub cleanup_recorded: Option<String>,
    /// Zone docker, when its settings are dockgate's business (see `zones::managed`).
    pub zone: Option<ZoneFound>,
    /// firewalld >= 2.3's StrictForwardPorts.
    pub strict_forward_ports: bool,
    /// The forward-ports of the zone outside connections meet, and dockgate's record of its
    /// own: read when StrictForwardPorts is on or dockgate has some to take back.
    pub forwards: Option<ForwardsFound>,
}

/// The forward-ports dockgate keeps where StrictForwardPorts is on, as its state file records
/// them: only these are ever taken out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forwards {
    /// (zone, forward-port)
    pub ports: BTreeSet<(String, ForwardPort)>,
}

/// The state file of [`Forwards`].
pub const FORWARDS_FILE: &str = "forward-ports.json";

/// Where dockgate's forward-ports lead if firewalld's own DNAT ever ran before Docker's: the
/// loopback address, which a packet from outside cannot reach (a martian, dropped), so that it
/// would close rather than redirect. Docker's DNAT comes first (iptables' nat hook runs before
/// firewalld's), so the forward-port only has firewalld's strict check let the connection on
/// to dockgate's rules, which judge its source.
pub const FORWARD_TO: &str = "127.0.0.1";

/// The forward-ports of the zone outside connections meet, as firewalld holds them.
#[derive(Debug, Clone)]
pub struct ForwardsFound {
    pub zone: String,
    pub runtime: Vec<ForwardPort>,
    pub permanent: Vec<ForwardPort>,
    pub recorded: Forwards,
}

/// Zone docker as firewalld reports it, with dockgate's record of what it found there.
#[derive(Debug, Clone)]
pub struct ZoneFound {
    pub permanent: ZoneSettings,
    pub runtime: ZoneSettings,
    pub egress_policy: bool,
    pub recorded: Originals,
}

/// One call the applier makes, or one record it writes to the state dir, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// firewalld.conf's CleanupOnExit as found, kept before it is changed.
    RecordCleanup(String),
    SetCleanupOnExit(String),
    ForgetCleanup,
    /// Zone docker's settings as found, kept before any of them is changed.
    RecordZone(Originals),
    SetZoneAccess(Layer, ZoneAccess),
    AddEgressPolicy,
    RemoveEgressPolicy,
    /// The record to keep once the zone holds what is wanted (None: delete it).
    KeepZoneRecord(Option<Originals>),
    WritePermanent(PermanentDirect),
    /// firewalld reloads and the permanent layer becomes the runtime one; the counts say what
    /// that puts in and takes out of the kernel.
    Reload {
        rules_added: usize,
        rules_removed: usize,
    },
    AddChain(DirectChain),
    /// Someone else's chain (DOCKER-USER), registered before rules go into it.
    RegisterChain(DirectChain),
    AddRule(DirectRule),
    RemoveRule(DirectRule),
    RemoveChain(DirectChain),
    /// Out and in again, so that firewalld inserts it first in its chain.
    Reseat(DirectRule),
    /// The bridges dockgate binds elsewhere, kept before it moves them (docker-prestart moves
    /// them back from this record even while Docker is down).
    RecordBound(Bound),
    /// dockgate's forward-ports as they will be, kept before any is added (None: delete the
    /// record, there are none).
    RecordForwards(Option<Forwards>),
    AddForwardPort(Layer, String, ForwardPort),
    /// Taken out; one that is not there (any more) is fine.
    RemoveForwardPort(Layer, String, ForwardPort),
    /// Binds an interface to a zone at run time.
    MoveBridge {
        zone: String,
        interface: String,
    },
    ForgetBound,
}

/// Whether firewalld must reload before the kernel holds the plan (then the permanent layer
/// must be read too).
pub fn reload_needed(desired: &Desired, seen: &Seen) -> bool {
    prepare_seen(desired, seen).reload
}

fn prepare_seen(desired: &Desired, seen: &Seen) -> Prepare {
    let zone_seen = seen.zone.as_ref().map(|found| ZoneSeen {
        permanent: &found.permanent,
        runtime: &found.runtime,
        egress_policy: found.egress_policy,
        recorded: &found.recorded,
    });
    prepare(
        desired,
        &seen.cleanup_now,
        seen.cleanup_recorded.as_deref(),
        zone_seen.as_ref(),
        seen.runtime_chains.is_empty() && seen.runtime_rules.is_empty(),
        seen.major,
    )
}

/// Everything up to the kernel holding the plan, in the order to do it: CleanupOnExit, zone
/// docker's permanent settings and egress policy, then (when something needs a reload: see
/// [`prepare`]) the permanent layer and the reload, then the runtime direct changes, then zone
/// docker's runtime settings. After a reload the runtime layer is what was just written to the
/// permanent one (firewalld loads it), so the direct changes are chosen against that; a
/// firewalld that failed to restore a rule is found out by the next reconcile's read.
pub fn runtime_steps(desired: &Desired, seen: &Seen) -> Vec<Step> {
    let prepare = prepare_seen(desired, seen);
    let mut steps = Vec::new();
    match prepare.cleanup {
        Cleanup::Keep => {}
        Cleanup::TurnOff { record } => {
            steps.extend(record.map(Step::RecordCleanup));
            steps.push(Step::SetCleanupOnExit("no".to_owned()));
        }
        Cleanup::GiveBack(original) => {
            steps.push(Step::SetCleanupOnExit(original));
            steps.push(Step::ForgetCleanup);
        }
    }
    let zone = prepare.zone;
    steps.extend(zone.record.map(Step::RecordZone));
    steps.extend(
        zone.permanent
            .map(|access| Step::SetZoneAccess(Layer::Permanent, access)),
    );
    steps.extend(zone.egress_policy.map(|add| {
        if add {
            Step::AddEgressPolicy
        } else {
            Step::RemoveEgressPolicy
        }
    }));
    let direct_now = if prepare.reload {
        let before = direct(
            &desired.plan,
            &seen.runtime_chains,
            &seen.runtime_rules,
            false,
        );
        let current = seen
            .permanent
            .clone()
            .expect("the permanent layer is read when a reload is needed");
        let planned = permanent(&desired.plan, current.clone());
        let after_reload = planned.clone().unwrap_or(current);
        steps.extend(planned.map(Step::WritePermanent));
        steps.push(Step::Reload {
            rules_added: before.add_rules.len(),
            rules_removed: before.remove_rules.len(),
        });
        (after_reload.chains, after_reload.rules)
    } else {
        (seen.runtime_chains.clone(), seen.runtime_rules.clone())
    };
    let changes = direct(
        &desired.plan,
        &direct_now.0,
        &direct_now.1,
        desired.reseat_verdict,
    );
    steps.extend(changes.add_chains.into_iter().map(Step::AddChain));
    steps.extend(changes.register_chains.into_iter().map(Step::RegisterChain));
    steps.extend(changes.add_rules.into_iter().map(Step::AddRule));
    steps.extend(changes.remove_rules.into_iter().map(Step::RemoveRule));
    steps.extend(changes.remove_chains.into_iter().map(Step::RemoveChain));
    steps.extend(changes.reseat.into_iter().map(Step::Reseat));
    steps.extend(forward_steps(desired, seen));
    // A reload already made the runtime zone the permanent one.
    if !prepare.reload {
        steps.extend(
            zone.runtime
                .map(|access| Step::SetZoneAccess(Layer::Runtime, access)),
        );
    }
    steps.extend(zone.keep.map(Step::KeepZoneRecord));
    steps
}

/// Where firewalld's StrictForwardPorts is on, it refuses every DNATed connection that no
/// forward-port with a destination address names by its original port (firewalld 2.3+,
/// nftables.py: the accept in filter_FORWARD_dnat matches the port alone, in any zone and
/// either family). So that the exposures keep working there, dockgate keeps a forward-port in
/// the zone outside connections meet for each published port its policy lets some source
/// reach, in both layers, and none for a port nobody may reach; dockgate's rules still judge
/// every source. Where it is off (or firewalld has no such setting), dockgate's are taken out.
/// They go in after the rules that judge their ports; only recorded ones ever come out.
pub fn forward_steps(desired: &Desired, seen: &Seen) -> Vec<Step> {
    let Some(found) = &seen.forwards else {
        return Vec::new();
    };
    let wanted: BTreeSet<(String, ForwardPort)> = desired
        .forward_ports
        .iter()
        .filter(|_| seen.strict_forward_ports)
        .map(|(port, protocol)| {
            (
                found.zone.clone(),
                ForwardPort {
                    port: port.to_string(),
                    protocol: protocol.as_str().to_owned(),
                    toport: String::new(),
                    toaddr: FORWARD_TO.to_owned(),
                },
            )
        })
        .collect();
    let mut steps = Vec::new();
    let ever: BTreeSet<_> = found.recorded.ports.union(&wanted).cloned().collect();
    if ever != found.recorded.ports {
        steps.push(Step::RecordForwards(Some(Forwards { ports: ever })));
    }
    for (zone, port) in &wanted {
        for (layer, present) in [
            (Layer::Runtime, &found.runtime),
            (Layer::Permanent, &found.permanent),
        ] {
            if !present.contains(port) {
                steps.push(Step::AddForwardPort(layer, zone.clone(), port.clone()));
            }
        }
    }
    let stale: Vec<_> = found.recorded.ports.difference(&wanted).collect();
    for (zone, port) in &stale {
        for layer in [Layer::Runtime, Layer::Permanent] {
            steps.push(Step::RemoveForwardPort(layer, zone.clone(), port.clone()));
        }
    }
    if !stale.is_empty() || (wanted.is_empty() && !found.recorded.ports.is_empty()) {
        steps.push(Step::RecordForwards(
            (!wanted.is_empty()).then_some(Forwards { ports: wanted }),
        ));
    }
    steps
}

/// The permanent layer's step: the whole configuration in one write, when it does not hold the
/// plan yet.
pub fn permanent_steps(plan: &Plan, current: PermanentDirect) -> Vec<Step> {
    permanent(plan, current)
        .map(Step::WritePermanent)
        .into_iter()
        .collect()
}

/// The steps that put the bridges where `binding` wants them (see `zones::bridge_steps`).
pub fn bridge_steps(
    binding: &Binding,
    recorded: Option<&Bound>,
    active: &BTreeMap<String, ActiveZone>,
) -> Vec<Step> {
    let decided = zones::bridge_steps(binding, recorded, active);
    let mut steps: Vec<Step> = decided.record.map(Step::RecordBound).into_iter().collect();
    steps.extend(
        decided
            .moves
            .into_iter()
            .map(|(zone, interface)| Step::MoveBridge { zone, interface }),
    );
    if decided.forget {
        steps.push(Step::ForgetBound);
    }
    steps
}

/// Whether a chain is dockgate's own.
pub fn owns_chain(chain: &DirectChain) -> bool {
    chain.chain.starts_with(ENTRY_CHAIN)
}

/// Whether a rule is dockgate's: it sits in a dockgate chain or carries the marker comment.
pub fn owns_rule(rule: &DirectRule) -> bool {
    rule.chain.starts_with(ENTRY_CHAIN)
        || rule
            .comment()
            .is_some_and(|comment| comment.starts_with(MARKER))
}

/// The calls that turn one layer's direct configuration into the plan, in the order to make
/// them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub add_chains: Vec<DirectChain>,
    /// Chains of others (DOCKER-USER) to register before rules go into them.
    pub register_chains: Vec<DirectChain>,
    pub add_rules: Vec<DirectRule>,
    pub remove_rules: Vec<DirectRule>,
    pub remove_chains: Vec<DirectChain>,
    /// Rules taken out and put in again, so that firewalld inserts them first in their chain.
    pub reseat: Vec<DirectRule>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.add_chains.is_empty()
            && self.register_chains.is_empty()
            && self.add_rules.is_empty()
            && self.remove_rules.is_empty()
            && self.remove_chains.is_empty()
            && self.reseat.is_empty()
    }
}

/// When a rule may go in (ascending) or must come out (descending), so that every
/// intermediate state judges at least as strictly as needed and a verdict exists before
/// anything is marked for it:
/// 0. verdicts on marked packets, allows and the seen mark: harmless on their own;
/// 1. the deny mark, once every allow is in;
/// 2. the dispatch into the judging chain, once that chain is complete, and the start-up
///    guard, which turns away every new connection the seen mark has not reached;
/// 3. the jump from FORWARD into dockgate's entry chain, once everything behind it is there.
pub fn stage(rule: &DirectRule) -> u8 {
    match rule.comment() {
        Some(SEEN_COMMENT) => return 0,
        Some(UNJUDGED_COMMENT) => return 2,
        _ => {}
    }
    let target = rule
        .args
        .iter()
        .rposition(|arg| arg == "-j")
        .and_then(|at| rule.args.get(at + 1))
        .map(String::as_str);
    match target {
        Some(ENTRY_CHAIN) => 3,
        Some(JUDGE_CHAIN) => 2,
        Some("MARK") => 1,
        _ => 0,
    }
}

/// The changes that turn `current` (one layer, as firewalld reports it) into the plan. With
/// `reseat`, the verdict rules in filter FORWARD that are there already are put in again.
pub fn direct(
    plan: &Plan,
    current_chains: &[DirectChain],
    current_rules: &[DirectRule],
    reseat: bool,
) -> Changes {
    let current_chains: BTreeSet<&DirectChain> = current_chains.iter().collect();
    let current_rules: BTreeSet<&DirectRule> = current_rules.iter().collect();

    let add_chains = plan
        .chains
        .iter()
        .filter(|chain| !current_chains.contains(chain))
        .cloned()
        .collect();
    let register_chains = plan
        .foreign_chains
        .iter()
        .filter(|chain| !current_chains.contains(chain))
        .cloned()
        .collect();
    let mut add_rules: Vec<DirectRule> = plan
        .rules
        .iter()
        .filter(|rule| !current_rules.contains(rule))
        .cloned()
        .collect();
    add_rules.sort_by_key(stage);
    let mut remove_rules: Vec<DirectRule> = current_rules
        .iter()
        .filter(|rule| owns_rule(rule) && !plan.rules.contains(rule))
        .map(|rule| (*rule).clone())
        .collect();
    remove_rules.sort_by_key(|rule| std::cmp::Reverse(stage(rule)));
    let remove_chains = current_chains
        .iter()
        .filter(|chain| owns_chain(chain) && !plan.chains.contains(chain))
        .map(|chain| (*chain).clone())
        .collect();
    let reseat = if reseat {
        plan.rules
            .iter()
            .filter(|rule| {
                rule.table == "filter"
                    && rule.chain == "FORWARD"
                    && rule.comment() == Some(VERDICT_COMMENT)
                    && current_rules.contains(rule)
            })
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    Changes {
        add_chains,
        register_chains,
        add_rules,
        remove_rules,
        remove_chains,
        reseat,
    }
}

/// The permanent configuration with dockgate's part replaced by the plan and everyone
/// else's left as it was; None when it holds the plan already.
pub fn permanent(plan: &Plan, mut permanent: PermanentDirect) -> Option<PermanentDirect> {
    if direct(plan, &permanent.chains, &permanent.rules, false).is_empty() {
        return None;
    }
    permanent.chains.retain(|chain| !owns_chain(chain));
    for chain in plan.chains.iter().chain(&plan.foreign_chains) {
        if !permanent.chains.contains(chain) {
            permanent.chains.push(chain.clone());
        }
    }
    permanent.rules.retain(|rule| !owns_rule(rule));
    permanent.rules.extend(plan.rules.iter().cloned());
    Some(permanent)
}

#[cfg(test)]
mod tests;
