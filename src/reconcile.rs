//! One reconcile: read Docker's view and firewalld's state, plan, close the gap. `dockgated
//! --once` runs it once; `--remove` undoes everything.

use std::time::{Duration, Instant};

use crate::apply::{self, Outcome};
use crate::config::Config;
use crate::config::Exposure;
use crate::docker::{Docker, DockerError};
use crate::exposures::{self, RuntimeExposure, Store, StoreError};
use crate::firewalld::{Firewalld, FirewalldError};
use crate::plan::{self, DockerView, Identified, Plan};
use crate::state::StateDir;
use crate::zones::{self, ZoneError, ZoneOutcome};

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("firewalld is not running; start it first (systemctl start firewalld)")]
    FirewalldNotRunning,
    #[error("Docker is not reachable: {0}; start it first (systemctl start docker)")]
    Docker(#[from] DockerError),
    #[error("firewalld: {0}")]
    Firewalld(#[from] FirewalldError),
    #[error(transparent)]
    Zone(#[from] ZoneError),
    #[error("runtime exposures: {0}")]
    Exposures(#[from] StoreError),
}

/// After a firewalld reload or start, Docker re-inserts its bridges into zone docker and
/// rebuilds its rules; binding a bridge elsewhere in the middle of that made Docker 20.10 leave
/// its DNAT out (seen in the sandbox). Bridges are bound only after this pause.
pub const DOCKER_REBUILD_PAUSE: Duration = Duration::from_secs(2);

/// firewalld.conf's CleanupOnExit as dockgate found it, kept until dockgate gives it back.
const CLEANUP_FILE: &str = "firewalld-cleanup-on-exit.json";

/// What a reconcile found and did.
#[derive(Debug, Clone)]
pub struct Reconciled {
    pub plan: Plan,
    pub rules: Outcome,
    pub zone: ZoneOutcome,
    pub bridges_bound: usize,
    /// CleanupOnExit was turned off (or given back) in firewalld.conf.
    pub cleanup_on_exit_changed: bool,
    /// firewalld was reloaded (first registration, zone target, CleanupOnExit).
    pub reloaded: bool,
    /// From the start of the reconcile (Docker's view read) until the kernel held the rules.
    pub in_kernel_after: Duration,
    pub duration: Duration,
}

impl Reconciled {
    /// firewalld calls that changed something; 0 when everything already was as planned.
    pub fn writes(&self) -> usize {
        self.rules.writes
            + self.zone.writes
            + self.bridges_bound
            + usize::from(self.cleanup_on_exit_changed)
    }
}

/// The rules the config and the runtime exposures ask for, given Docker's view.
pub fn plan_for(config: &Config, runtime: &[RuntimeExposure], docker: &DockerView) -> Plan {
    let ids = plan::config_exposure_ids(config);
    let mut exposures = plan::identify(&ids, config);
    let runtime: Vec<(String, Exposure)> = runtime
        .iter()
        .map(|entry| (entry.id.clone(), entry.exposure()))
        .collect();
    exposures.extend(
        runtime
            .iter()
            .map(|(id, exposure)| Identified { id, exposure }),
    );
    plan::plan(config, &exposures, docker)
}

pub struct Enforcer {
    pub firewalld: Firewalld,
    pub docker: Docker,
    pub state: StateDir,
}

impl Enforcer {
    pub async fn docker_view(&self) -> Result<DockerView, DockerError> {
        let ports = self.docker.published_ports().await?;
        let bridges = self
            .docker
            .networks()
            .await?
            .into_iter()
            .filter_map(|network| network.bridge)
            .collect();
        Ok(DockerView { ports, bridges })
    }

    async fn require_firewalld(&self) -> Result<(), ReconcileError> {
        if self.firewalld.is_running().await? {
            Ok(())
        } else {
            Err(ReconcileError::FirewalldNotRunning)
        }
    }

    /// Reads Docker's view and the runtime exposures (taking out expired ones) and applies
    /// them with the config; fails when firewalld or Docker is down.
    pub async fn reconcile(&self, config: &Config) -> Result<Reconciled, ReconcileError> {
        let started = Instant::now();
        self.require_firewalld().await?;
        let docker = self.docker_view().await?;
        let mut store = Store::load(self.state.clone())?;
        store.expire(exposures::unix_now())?;
        self.reconcile_since(started, config, store.all(), &docker, true, |_| ())
            .await
    }

    /// Applies the config to a given view of Docker (the daemon passes an empty one while
    /// Docker is down, so that Docker starts behind the policy). Without `bind_now` the
    /// bridges are left where they are (the daemon waits for Docker to finish its own work).
    /// `in_kernel` is called once the kernel holds the planned rules, before the rest
    /// (permanent layer, zone docker, bridges) is done.
    pub async fn reconcile_with(
        &self,
        config: &Config,
        runtime: &[RuntimeExposure],
        docker: &DockerView,
        bind_now: bool,
        in_kernel: impl FnOnce(&Plan),
    ) -> Result<Reconciled, ReconcileError> {
        self.reconcile_since(Instant::now(), config, runtime, docker, bind_now, in_kernel)
            .await
    }

    async fn reconcile_since(
        &self,
        started: Instant,
        config: &Config,
        runtime: &[RuntimeExposure],
        docker: &DockerView,
        bind_now: bool,
        in_kernel: impl FnOnce(&Plan),
    ) -> Result<Reconciled, ReconcileError> {
        self.require_firewalld().await?;
        let plan = plan_for(config, runtime, docker);
        let cleanup_on_exit_changed = self.keep_rules_on_exit(!plan.rules.is_empty()).await?;
        tracing::debug!(cleanup_on_exit_changed, "CleanupOnExit checked");
        let before_apply = started.elapsed();
        let rules = apply::apply(&self.firewalld, &plan, in_kernel).await?;
        tracing::debug!(writes = rules.writes, "rules applied");
        let in_kernel_after = before_apply + rules.in_kernel_after;
        let zone = zones::apply_access(&self.firewalld, &self.state, &config.zone).await?;
        tracing::debug!(writes = zone.writes, "zone docker's access applied");
        let mut reloaded = rules.reloaded || zone.reloaded;
        if cleanup_on_exit_changed && !plan.rules.is_empty() && !reloaded {
            // firewalld reads CleanupOnExit at start and reload only.
            self.firewalld.reload_and_wait().await?;
            reloaded = true;
        }
        let bridges_bound = match &config.zone.bind {
            Some(_) if !bind_now => 0,
            Some(bind) => {
                if reloaded {
                    // This reconcile reloaded firewalld: Docker is rebuilding right now.
                    tokio::time::sleep(DOCKER_REBUILD_PAUSE).await;
                }
                zones::bind_bridges(&self.firewalld, &self.state, bind, &docker.bridges).await?
            }
            None => {
                let returned = zones::return_bridges(&self.firewalld, &self.state).await?;
                zones::forget_bound(&self.state)?;
                returned.len()
            }
        };
        Ok(Reconciled {
            plan,
            rules,
            zone,
            bridges_bound,
            cleanup_on_exit_changed,
            reloaded,
            in_kernel_after,
            duration: started.elapsed(),
        })
    }

    /// Takes out every rule and chain dockgate added (both layers), puts zone docker's settings
    /// back as dockgate found them and the bridges back in zone docker.
    pub async fn remove(&self) -> Result<(Outcome, ZoneOutcome), ReconcileError> {
        self.require_firewalld().await?;
        let rules = apply::apply(&self.firewalld, &Plan::default(), |_| ()).await?;
        let zone = zones::restore(&self.firewalld, &self.state).await?;
        self.keep_rules_on_exit(false).await?;
        Ok((rules, zone))
    }

    /// With CleanupOnExit=yes (the default of Debian's and RHEL's firewalld.conf), a graceful
    /// firewalld stop or restart takes every direct rule out of the kernel and leaves published
    /// ports open until firewalld is up again: 57-67 of 1200 denied attempts got through in the
    /// sandbox. With "no", firewalld leaves its rules in place when it stops and replaces them
    /// when it starts: 0 got through. So while dockgate enforces a policy, CleanupOnExit is off;
    /// the admin's value is recorded and given back when there is nothing left to enforce.
    /// Returns whether firewalld.conf was changed.
    async fn keep_rules_on_exit(&self, enforcing: bool) -> Result<bool, ReconcileError> {
        let recorded: Option<String> = self.state.load(CLEANUP_FILE).map_err(ZoneError::from)?;
        if enforcing {
            let value = self.firewalld.cleanup_on_exit().await?;
            if !matches!(value.to_ascii_lowercase().as_str(), "yes" | "true") {
                return Ok(false);
            }
            if recorded.is_none() {
                self.state
                    .store(CLEANUP_FILE, &value)
                    .map_err(ZoneError::from)?;
            }
            tracing::info!(
                was = value,
                "setting firewalld's CleanupOnExit=no, so that stopping or restarting firewalld does not open published ports"
            );
            self.firewalld.set_cleanup_on_exit("no").await?;
            Ok(true)
        } else if let Some(original) = recorded {
            tracing::info!(value = original, "giving firewalld's CleanupOnExit back");
            self.firewalld.set_cleanup_on_exit(&original).await?;
            self.state.remove(CLEANUP_FILE).map_err(ZoneError::from)?;
            Ok(true)
        } else {
            Ok(false)
        }
    }
}
