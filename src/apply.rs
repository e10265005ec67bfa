//! Closing the gap between the plan and what firewalld holds: a pure diff, then the fewest
//! firewalld calls, in an order that never lets a denied connection through.
//!
//! Both layers are kept equal to the plan. The runtime layer is what is in the kernel now; the
//! permanent layer is what firewalld puts back by itself on every start and reload, before it
//! emits `Reloaded` and before Docker restores its DNAT, so a reload has no window to cover.

use std::collections::BTreeSet;

use crate::firewalld::{ErrorCode, Firewalld, FirewalldError, Layer, PermanentDirect};
use crate::plan::{ENTRY_CHAIN, JUDGE_CHAIN, MARKER, Plan, SEEN_COMMENT, UNJUDGED_COMMENT};
use crate::rules::{DirectChain, DirectRule};

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
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.add_chains.is_empty()
            && self.register_chains.is_empty()
            && self.add_rules.is_empty()
            && self.remove_rules.is_empty()
            && self.remove_chains.is_empty()
    }
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

/// When a rule may go in (ascending) or must come out (descending), so that every
/// intermediate state judges at least as strictly as needed and a verdict exists before
/// anything is marked for it:
/// 0. verdicts on marked packets, allows and the seen mark: harmless on their own;
/// 1. the deny mark, once every allow is in;
/// 2. the dispatch into the judging chain, once that chain is complete, and the start-up
///    guard, which turns away every new connection the seen mark has not reached;
/// 3. the jump from FORWARD into dockgate's entry chain, once everything behind it is there.
fn stage(rule: &DirectRule) -> u8 {
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

/// The changes that turn `current` (one layer, as firewalld reports it) into the plan.
/// `registered` is whether a foreign chain is already usable in this layer.
pub fn diff(plan: &Plan, current_chains: &[DirectChain], current_rules: &[DirectRule]) -> Changes {
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
    Changes {
        add_chains,
        register_chains,
        add_rules,
        remove_rules,
        remove_chains,
    }
}

/// What an apply did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// firewalld calls that changed something (runtime calls, permanent updates, reloads).
    pub writes: usize,
    pub rules_added: usize,
    pub rules_removed: usize,
    /// Whether firewalld had to be reloaded to take the first rules safely (firewalld 2.x).
    pub reloaded: bool,
    /// From the start of the apply until the runtime layer (the kernel) held the plan; the
    /// permanent layer is written after that.
    pub in_kernel_after: std::time::Duration,
}

/// Makes both layers of firewalld's direct configuration equal to the plan; touches nothing
/// that is not dockgate's. `in_kernel` is called once the kernel holds the plan, before the
/// permanent layer is written (the daemon answers its D-Bus callers there).
pub async fn apply(
    firewalld: &Firewalld,
    plan: &Plan,
    in_kernel: impl FnOnce(&Plan),
) -> Result<Outcome, FirewalldError> {
    let started = std::time::Instant::now();
    let mut outcome = Outcome::default();

    let runtime_chains = firewalld.chains(Layer::Runtime).await?;
    let runtime_rules = firewalld.rules(Layer::Runtime).await?;

    // firewalld 2.x flushes every iptables table, Docker's rules included, on the first
    // runtime direct call while it holds no direct configuration at all. Then the plan goes in
    // through the permanent layer and one reload, which flushes before it emits `Reloaded`:
    // Docker rebuilds its rules on that signal, and firewalld has already restored dockgate's.
    let bootstrap = runtime_chains.is_empty()
        && runtime_rules.is_empty()
        && !plan.rules.is_empty()
        && firewalld.major_version().await? >= 2;

    if bootstrap {
        let permanent = firewalld.permanent_direct().await?;
        firewalld
            .set_permanent_direct(&planned_permanent(permanent, plan))
            .await?;
        firewalld.reload_and_wait().await?;
        outcome.writes += 2;
        outcome.reloaded = true;
        outcome.rules_added = plan.rules.len();
        outcome.in_kernel_after = started.elapsed();
        in_kernel(plan);
        return Ok(outcome);
    }

    let changes = diff(plan, &runtime_chains, &runtime_rules);
    for chain in &changes.add_chains {
        firewalld.add_chain(Layer::Runtime, chain).await?;
        outcome.writes += 1;
    }
    for chain in &changes.register_chains {
        match firewalld.add_chain(Layer::Runtime, chain).await {
            // firewalld 1.x runs `iptables -N`, which fails for the chain Docker already
            // made; rules still go into Docker's chain.
            Err(FirewalldError::Refused {
                code: ErrorCode::CommandFailed,
                detail,
            }) if detail.contains("Chain already exists") => {}
            other => {
                other?;
                outcome.writes += 1;
            }
        }
    }
    for rule in &changes.add_rules {
        firewalld.add_rule(Layer::Runtime, rule).await?;
        outcome.writes += 1;
        outcome.rules_added += 1;
    }
    for rule in &changes.remove_rules {
        match firewalld.remove_rule(Layer::Runtime, rule).await {
            // Gone already (someone else removed it): the goal is reached.
            Err(error) if error.code() == Some(&ErrorCode::NotEnabled) => {}
            other => {
                other?;
                outcome.writes += 1;
                outcome.rules_removed += 1;
            }
        }
    }
    for chain in &changes.remove_chains {
        firewalld.remove_chain(Layer::Runtime, chain).await?;
        outcome.writes += 1;
    }
    outcome.in_kernel_after = started.elapsed();
    in_kernel(plan);

    // The permanent layer last: reading and rewriting it costs firewalld time in proportion to
    // all its rules, and until the next reload the runtime layer is what is in force.
    let permanent = firewalld.permanent_direct().await?;
    if !diff(plan, &permanent.chains, &permanent.rules).is_empty() {
        firewalld
            .set_permanent_direct(&planned_permanent(permanent, plan))
            .await?;
        outcome.writes += 1;
    }
    Ok(outcome)
}

/// The permanent configuration with dockgate's part replaced by the plan and everyone
/// else's left as it was.
fn planned_permanent(mut permanent: PermanentDirect, plan: &Plan) -> PermanentDirect {
    permanent.chains.retain(|chain| !owns_chain(chain));
    for chain in plan.chains.iter().chain(&plan.foreign_chains) {
        if !permanent.chains.contains(chain) {
            permanent.chains.push(chain.clone());
        }
    }
    permanent.rules.retain(|rule| !owns_rule(rule));
    permanent.rules.extend(plan.rules.iter().cloned());
    permanent
}

#[cfg(test)]
mod tests;
