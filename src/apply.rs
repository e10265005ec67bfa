//! The applier: reads what firewalld holds, asks `diff` what to change, and makes the calls.
//! It decides nothing itself. An apply has phases, so that whoever drives it can answer
//! callers once the kernel holds the rules, before the slower permanent layer is written:
//!
//! 1. [`Applier::runtime_phase`]: CleanupOnExit, zone docker's settings and, when firewalld
//!    must reload for them (or for its first rules on firewalld 2.x), the permanent direct
//!    layer and the reload; then the runtime direct rules. After it the kernel holds the plan.
//! 2. [`Applier::permanent_phase`]: the permanent direct layer, which firewalld restores by
//!    itself on its next start or reload.
//! 3. [`Applier::bridges_phase`]: the bridges where `bind` wants them.

use std::time::{Duration, Instant};

use crate::diff::{self, Cleanup, Desired, ZoneSeen};
use crate::firewalld::{ErrorCode, Firewall, FirewalldError, Layer};
use crate::state::{StateDir, StateError};
use crate::zones::{self, Bound, Originals};

/// firewalld.conf's CleanupOnExit as dockgate found it, kept until dockgate gives it back.
const CLEANUP_FILE: &str = "firewalld-cleanup-on-exit.json";

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("firewalld is not running; start it first (systemctl start firewalld)")]
    FirewalldNotRunning,
    #[error("firewalld: {0}")]
    Firewalld(#[from] FirewalldError),
    #[error(transparent)]
    State(#[from] StateError),
}

/// What an apply did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// firewalld calls that changed something (runtime calls, permanent updates, reloads).
    pub writes: usize,
    pub rules_added: usize,
    pub rules_removed: usize,
    /// firewalld was reloaded (first rules on firewalld 2.x, CleanupOnExit, zone target).
    pub reloaded: bool,
    pub cleanup_on_exit_changed: bool,
    pub bridges_moved: usize,
    /// From the start of the apply until the kernel held the plan.
    pub in_kernel_after: Duration,
}

pub struct Applier<F> {
    pub firewall: F,
    pub state: StateDir,
}

impl<F: Firewall> Applier<F> {
    /// Everything up to the kernel holding the plan (see the module's documentation).
    pub async fn runtime_phase(&self, desired: &Desired) -> Result<Outcome, ApplyError> {
        let started = Instant::now();
        let firewall = &self.firewall;
        if !firewall.is_running().await? {
            return Err(ApplyError::FirewalldNotRunning);
        }
        let mut outcome = Outcome::default();
        let mut chains = firewall.chains(Layer::Runtime).await?;
        let mut rules = firewall.rules(Layer::Runtime).await?;
        let before = diff::direct(&desired.plan, &chains, &rules, false);
        let runtime_direct_empty = chains.is_empty() && rules.is_empty();
        let major = if runtime_direct_empty && desired.enforcing() {
            firewall.major_version().await?
        } else {
            0
        };
        let cleanup_now = firewall.cleanup_on_exit().await?;
        let cleanup_recorded: Option<String> = self.state.load(CLEANUP_FILE)?;
        let recorded: Originals = self.state.load(zones::ORIGINALS_FILE)?.unwrap_or_default();
        let zone_seen = if zones::managed(&desired.zone, &recorded)
            && firewall.zone_exists(zones::DOCKER_ZONE).await?
        {
            Some((
                firewall
                    .zone_settings(Layer::Permanent, zones::DOCKER_ZONE)
                    .await?,
                firewall
                    .zone_settings(Layer::Runtime, zones::DOCKER_ZONE)
                    .await?,
                firewall.policy_exists(zones::EGRESS_POLICY).await?,
                recorded,
            ))
        } else {
            None
        };
        let prepare = diff::prepare(
            desired,
            &cleanup_now,
            cleanup_recorded.as_deref(),
            zone_seen
                .as_ref()
                .map(|(permanent, runtime, egress_policy, recorded)| ZoneSeen {
                    permanent,
                    runtime,
                    egress_policy: *egress_policy,
                    recorded,
                })
                .as_ref(),
            runtime_direct_empty,
            major,
        );

        // What was found is on disk before anything is changed.
        match &prepare.cleanup {
            Cleanup::Keep => {}
            Cleanup::TurnOff { record } => {
                if let Some(value) = record {
                    self.state.store(CLEANUP_FILE, value)?;
                }
                tracing::info!(
                    was = cleanup_now,
                    "setting firewalld's CleanupOnExit=no, so that stopping or restarting firewalld does not open published ports"
                );
                firewall.set_cleanup_on_exit("no").await?;
                outcome.cleanup_on_exit_changed = true;
            }
            Cleanup::GiveBack(original) => {
                tracing::info!(value = original, "giving firewalld's CleanupOnExit back");
                firewall.set_cleanup_on_exit(original).await?;
                self.state.remove(CLEANUP_FILE)?;
                outcome.cleanup_on_exit_changed = true;
            }
        }
        let zone = &prepare.zone;
        if let Some(record) = &zone.record {
            self.state.store(zones::ORIGINALS_FILE, record)?;
        }
        if let Some(access) = &zone.permanent {
            firewall
                .set_zone_access(Layer::Permanent, zones::DOCKER_ZONE, access)
                .await?;
            outcome.writes += 1;
        }
        match zone.egress_policy {
            Some(true) => {
                firewall
                    .add_accept_policy(
                        zones::EGRESS_POLICY,
                        zones::EGRESS_DESCRIPTION,
                        zones::DOCKER_ZONE,
                        "ANY",
                    )
                    .await?;
                outcome.writes += 1;
            }
            Some(false) => {
                firewall.remove_policy(zones::EGRESS_POLICY).await?;
                outcome.writes += 1;
            }
            None => {}
        }
        if prepare.reload {
            // The reload puts the permanent layer into the kernel: it holds the plan first.
            if let Some(planned) =
                diff::permanent(&desired.plan, firewall.permanent_direct().await?)
            {
                firewall.set_permanent_direct(&planned).await?;
                outcome.writes += 1;
            }
            firewall.reload_and_wait().await?;
            outcome.writes += 1;
            outcome.reloaded = true;
            chains = firewall.chains(Layer::Runtime).await?;
            rules = firewall.rules(Layer::Runtime).await?;
        }

        let changes = diff::direct(&desired.plan, &chains, &rules, desired.reseat_verdict);
        self.make(&changes, &mut outcome).await?;
        if prepare.reload {
            // The reload itself put in or took out what the permanent layer changed.
            outcome.rules_added = before.add_rules.len();
            outcome.rules_removed = before.remove_rules.len();
        }
        if let Some(access) = zone.runtime.as_ref().filter(|_| !prepare.reload) {
            firewall
                .set_zone_access(Layer::Runtime, zones::DOCKER_ZONE, access)
                .await?;
            outcome.writes += 1;
        }
        match &zone.keep {
            Some(Some(record)) => self.state.store(zones::ORIGINALS_FILE, record)?,
            Some(None) => self.state.remove(zones::ORIGINALS_FILE)?,
            None => {}
        }
        outcome.in_kernel_after = started.elapsed();
        Ok(outcome)
    }

    /// The runtime direct calls, in the order `diff` gave them.
    async fn make(&self, changes: &diff::Changes, outcome: &mut Outcome) -> Result<(), ApplyError> {
        let firewall = &self.firewall;
        for chain in &changes.add_chains {
            firewall.add_chain(Layer::Runtime, chain).await?;
            outcome.writes += 1;
        }
        for chain in &changes.register_chains {
            match firewall.add_chain(Layer::Runtime, chain).await {
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
            firewall.add_rule(Layer::Runtime, rule).await?;
            outcome.writes += 1;
            outcome.rules_added += 1;
        }
        for rule in &changes.remove_rules {
            match firewall.remove_rule(Layer::Runtime, rule).await {
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
            firewall.remove_chain(Layer::Runtime, chain).await?;
            outcome.writes += 1;
        }
        // Out and in again: firewalld inserts a direct rule of a built-in chain first, ahead
        // of what Docker inserted meanwhile. The mangle DROP holds while it is out.
        for rule in &changes.reseat {
            firewall.remove_rule(Layer::Runtime, rule).await?;
            firewall.add_rule(Layer::Runtime, rule).await?;
            outcome.writes += 2;
        }
        Ok(())
    }

    /// The permanent direct layer: reading and rewriting it costs firewalld time in proportion
    /// to all its rules, and until the next reload the runtime layer is what is in force.
    pub async fn permanent_phase(
        &self,
        desired: &Desired,
        outcome: &mut Outcome,
    ) -> Result<(), ApplyError> {
        let firewall = &self.firewall;
        if let Some(planned) = diff::permanent(&desired.plan, firewall.permanent_direct().await?) {
            firewall.set_permanent_direct(&planned).await?;
            outcome.writes += 1;
        }
        Ok(())
    }

    /// Moves the bridges where the desired binding wants them, at run time only: a permanent
    /// binding would make firewalld hold them there when Docker starts, and Docker refuses to
    /// start then (ZONE_CONFLICT).
    pub async fn bridges_phase(
        &self,
        desired: &Desired,
        outcome: &mut Outcome,
    ) -> Result<Vec<String>, ApplyError> {
        if desired.bridges == zones::Binding::Leave {
            return Ok(Vec::new());
        }
        let recorded: Option<Bound> = self.state.load(zones::BOUND_FILE)?;
        if recorded.is_none() && matches!(desired.bridges, zones::Binding::Return) {
            return Ok(Vec::new());
        }
        let active = self.firewall.active_zones().await?;
        let steps = zones::bridge_steps(&desired.bridges, recorded.as_ref(), &active);
        if let Some(record) = &steps.record {
            self.state.store(zones::BOUND_FILE, record)?;
        }
        let mut moved = Vec::new();
        for (zone, interface) in &steps.moves {
            self.firewall
                .change_zone_of_interface(zone, interface)
                .await?;
            moved.push(interface.clone());
        }
        if steps.forget {
            self.state.remove(zones::BOUND_FILE)?;
        }
        outcome.bridges_moved += moved.len();
        outcome.writes += moved.len();
        Ok(moved)
    }

    /// All three phases at once, for `--once`, `--remove` and `docker-prestart`.
    pub async fn apply(&self, desired: &Desired) -> Result<Outcome, ApplyError> {
        let mut outcome = self.runtime_phase(desired).await?;
        self.permanent_phase(desired, &mut outcome).await?;
        self.bridges_phase(desired, &mut outcome).await?;
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests;
