//! The applier: reads what firewalld and the state dir hold, asks `diff` for the steps that
//! close the gap, and makes them. It decides nothing itself. An apply has phases, so that
//! whoever drives it can answer callers once the kernel holds the rules, before the slower
//! permanent layer is written; each phase reads once and executes the steps `diff` gave:
//!
//! 1. [`Applier::runtime_phase`]: CleanupOnExit, zone docker's settings and, when firewalld
//!    must reload for them (or for its first rules on firewalld 2.x), the permanent direct
//!    layer and the reload; then the runtime direct rules. After it the kernel holds the plan.
//! 2. [`Applier::permanent_phase`]: the permanent direct layer, which firewalld restores by
//!    itself on its next start or reload.
//! 3. [`Applier::bridges_phase`]: the bridges where `bind` wants them.

use std::time::{Duration, Instant};

use crate::diff::{self, Desired, Forwards, ForwardsFound, Seen, Step, ZoneFound};
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
        if !self.firewall.is_running().await? {
            return Err(ApplyError::FirewalldNotRunning);
        }
        let seen = self.read(desired).await?;
        let mut outcome = Outcome::default();
        for step in diff::runtime_steps(desired, &seen) {
            self.make(step, &mut outcome).await?;
        }
        outcome.in_kernel_after = started.elapsed();
        Ok(outcome)
    }

    /// What the runtime phase's steps are chosen from, read once.
    async fn read(&self, desired: &Desired) -> Result<Seen, ApplyError> {
        let firewall = &self.firewall;
        let recorded: Originals = self.state.load(zones::ORIGINALS_FILE)?.unwrap_or_default();
        // Zone docker is described only when its settings are dockgate's business: an Expose
        // does not wait for firewalld to describe a zone nobody manages.
        let zone = if zones::managed(&desired.zone, &recorded)
            && firewall.zone_exists(zones::DOCKER_ZONE).await?
        {
            Some(ZoneFound {
                permanent: firewall
                    .zone_settings(Layer::Permanent, zones::DOCKER_ZONE)
                    .await?,
                runtime: firewall
                    .zone_settings(Layer::Runtime, zones::DOCKER_ZONE)
                    .await?,
                egress_policy: firewall.policy_exists(zones::EGRESS_POLICY).await?,
                recorded,
            })
        } else {
            None
        };
        let strict_forward_ports = firewall.strict_forward_ports().await?;
        let recorded: Option<Forwards> = self.state.load(diff::FORWARDS_FILE)?;
        let forwards = if strict_forward_ports || recorded.is_some() {
            let outside = firewall.outside_zone(&desired.external_interfaces).await?;
            Some(ForwardsFound {
                runtime: firewall.forward_ports(Layer::Runtime, &outside).await?,
                permanent: firewall.forward_ports(Layer::Permanent, &outside).await?,
                zone: outside,
                recorded: recorded.unwrap_or_default(),
            })
        } else {
            None
        };
        let mut seen = Seen {
            runtime_chains: firewall.chains(Layer::Runtime).await?,
            runtime_rules: firewall.rules(Layer::Runtime).await?,
            permanent: None,
            major: firewall.major_version().await?,
            cleanup_now: firewall.cleanup_on_exit().await?,
            cleanup_recorded: self.state.load(CLEANUP_FILE)?,
            zone,
            strict_forward_ports,
            forwards,
        };
        if diff::reload_needed(desired, &seen) {
            seen.permanent = Some(firewall.permanent_direct().await?);
        }
        Ok(seen)
    }

    /// One step: a call to firewalld, or a record in the state dir.
    async fn make(&self, step: Step, outcome: &mut Outcome) -> Result<(), ApplyError> {
        let firewall = &self.firewall;
        match step {
            Step::RecordCleanup(value) => self.state.store(CLEANUP_FILE, &value)?,
            Step::SetCleanupOnExit(value) => {
                if value == "no" {
                    tracing::info!(
                        "setting firewalld's CleanupOnExit=no, so that stopping or restarting firewalld does not open published ports"
                    );
                } else {
                    tracing::info!(value, "giving firewalld's CleanupOnExit back");
                }
                firewall.set_cleanup_on_exit(&value).await?;
                outcome.cleanup_on_exit_changed = true;
            }
            Step::ForgetCleanup => self.state.remove(CLEANUP_FILE)?,
            Step::RecordZone(record) => self.state.store(zones::ORIGINALS_FILE, &record)?,
            Step::SetZoneAccess(layer, access) => {
                firewall
                    .set_zone_access(layer, zones::DOCKER_ZONE, &access)
                    .await?;
                outcome.writes += 1;
            }
            Step::AddEgressPolicy => {
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
            Step::RemoveEgressPolicy => {
                firewall.remove_policy(zones::EGRESS_POLICY).await?;
                outcome.writes += 1;
            }
            Step::KeepZoneRecord(Some(record)) => {
                self.state.store(zones::ORIGINALS_FILE, &record)?
            }
            Step::KeepZoneRecord(None) => self.state.remove(zones::ORIGINALS_FILE)?,
            Step::WritePermanent(settings) => {
                firewall.set_permanent_direct(&settings).await?;
                outcome.writes += 1;
            }
            Step::Reload {
                rules_added,
                rules_removed,
            } => {
                firewall.reload_and_wait().await?;
                outcome.writes += 1;
                outcome.reloaded = true;
                outcome.rules_added += rules_added;
                outcome.rules_removed += rules_removed;
            }
            Step::AddChain(chain) => {
                firewall.add_chain(Layer::Runtime, &chain).await?;
                outcome.writes += 1;
            }
            Step::RegisterChain(chain) => match firewall.add_chain(Layer::Runtime, &chain).await {
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
            },
            Step::AddRule(rule) => {
                firewall.add_rule(Layer::Runtime, &rule).await?;
                outcome.writes += 1;
                outcome.rules_added += 1;
            }
            Step::RemoveRule(rule) => match firewall.remove_rule(Layer::Runtime, &rule).await {
                // Gone already (someone else removed it): the goal is reached.
                Err(error) if error.code() == Some(&ErrorCode::NotEnabled) => {}
                other => {
                    other?;
                    outcome.writes += 1;
                    outcome.rules_removed += 1;
                }
            },
            Step::RemoveChain(chain) => {
                firewall.remove_chain(Layer::Runtime, &chain).await?;
                outcome.writes += 1;
            }
            // firewalld inserts a direct rule of a built-in chain first, ahead of what Docker
            // inserted meanwhile. The mangle DROP holds while it is out.
            Step::Reseat(rule) => {
                firewall.remove_rule(Layer::Runtime, &rule).await?;
                firewall.add_rule(Layer::Runtime, &rule).await?;
                outcome.writes += 2;
            }
            Step::RecordForwards(Some(record)) => self.state.store(diff::FORWARDS_FILE, &record)?,
            Step::RecordForwards(None) => self.state.remove(diff::FORWARDS_FILE)?,
            Step::AddForwardPort(layer, zone, port) => {
                firewall.add_forward_port(layer, &zone, &port).await?;
                outcome.writes += 1;
            }
            Step::RemoveForwardPort(layer, zone, port) => {
                match firewall.remove_forward_port(layer, &zone, &port).await {
                    // Gone already (the admin took it out, or a zone was removed): reached.
                    Err(error)
                        if matches!(
                            error.code(),
                            Some(ErrorCode::NotEnabled | ErrorCode::InvalidZone)
                        ) => {}
                    other => {
                        other?;
                        outcome.writes += 1;
                    }
                }
            }
            Step::RecordBound(record) => self.state.store(zones::BOUND_FILE, &record)?,
            Step::MoveBridge { zone, interface } => {
                firewall.change_zone_of_interface(&zone, &interface).await?;
                outcome.writes += 1;
                outcome.bridges_moved += 1;
            }
            Step::ForgetBound => self.state.remove(zones::BOUND_FILE)?,
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
        let current = self.firewall.permanent_direct().await?;
        for step in diff::permanent_steps(&desired.plan, current) {
            self.make(step, outcome).await?;
        }
        Ok(())
    }

    /// Moves the bridges where the desired binding wants them, at run time only: a permanent
    /// binding would make firewalld hold them there when Docker starts, and Docker refuses to
    /// start then (ZONE_CONFLICT). Returns the bridges moved.
    pub async fn bridges_phase(
        &self,
        desired: &Desired,
        outcome: &mut Outcome,
    ) -> Result<Vec<String>, ApplyError> {
        if desired.bridges == zones::Binding::Leave {
            return Ok(Vec::new());
        }
        let recorded: Option<Bound> = self.state.load(zones::BOUND_FILE)?;
        // Nothing bound and nothing to bind: firewalld's zones need not be read.
        if recorded.is_none() && matches!(desired.bridges, zones::Binding::Return) {
            return Ok(Vec::new());
        }
        let active = self.firewall.active_zones().await?;
        let mut moved = Vec::new();
        for step in diff::bridge_steps(&desired.bridges, recorded.as_ref(), &active) {
            if let Step::MoveBridge { interface, .. } = &step {
                moved.push(interface.clone());
            }
            self.make(step, outcome).await?;
        }
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
