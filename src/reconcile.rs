//! One reconcile: read Docker's view and firewalld's state, plan, close the gap. `dockgated
//! --once` runs it once; `--remove` undoes everything.

use std::time::{Duration, Instant};

use crate::apply::{self, Outcome};
use crate::config::Config;
use crate::docker::{Docker, DockerError};
use crate::firewalld::{Firewalld, FirewalldError};
use crate::plan::{self, DockerView, Plan};
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
}

/// What a reconcile found and did.
#[derive(Debug, Clone)]
pub struct Reconciled {
    pub plan: Plan,
    pub rules: Outcome,
    pub zone: ZoneOutcome,
    pub bridges_bound: usize,
    /// From the start of the reconcile (Docker's view read) until the kernel held the rules.
    pub in_kernel_after: Duration,
    pub duration: Duration,
}

impl Reconciled {
    /// firewalld calls that changed something; 0 when everything already was as planned.
    pub fn writes(&self) -> usize {
        self.rules.writes + self.zone.writes + self.bridges_bound
    }
}

/// The rules the config asks for, given Docker's view.
pub fn plan_for(config: &Config, docker: &DockerView) -> Plan {
    let ids = plan::config_exposure_ids(config);
    let exposures = plan::identify(&ids, config);
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

    /// Reads Docker's view and applies the config; fails when firewalld or Docker is down.
    pub async fn reconcile(&self, config: &Config) -> Result<Reconciled, ReconcileError> {
        let started = Instant::now();
        self.require_firewalld().await?;
        let docker = self.docker_view().await?;
        self.reconcile_since(started, config, &docker, true).await
    }

    /// Applies the config to a given view of Docker (the daemon passes an empty one while
    /// Docker is down, so that Docker starts behind the policy). Without `bind_now` the
    /// bridges are left where they are (the daemon waits for Docker to finish its own work).
    pub async fn reconcile_with(
        &self,
        config: &Config,
        docker: &DockerView,
        bind_now: bool,
    ) -> Result<Reconciled, ReconcileError> {
        self.reconcile_since(Instant::now(), config, docker, bind_now)
            .await
    }

    async fn reconcile_since(
        &self,
        started: Instant,
        config: &Config,
        docker: &DockerView,
        bind_now: bool,
    ) -> Result<Reconciled, ReconcileError> {
        self.require_firewalld().await?;
        let plan = plan_for(config, docker);
        let before_apply = started.elapsed();
        let rules = apply::apply(&self.firewalld, &plan).await?;
        let in_kernel_after = before_apply + rules.in_kernel_after;
        let zone = zones::apply_access(&self.firewalld, &self.state, &config.zone).await?;
        let bridges_bound = match &config.zone.bind {
            Some(_) if !bind_now => 0,
            Some(bind) => {
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
            in_kernel_after,
            duration: started.elapsed(),
        })
    }

    /// Takes out every rule and chain dockgate added (both layers), puts zone docker's settings
    /// back as dockgate found them and the bridges back in zone docker.
    pub async fn remove(&self) -> Result<(Outcome, ZoneOutcome), ReconcileError> {
        self.require_firewalld().await?;
        let rules = apply::apply(&self.firewalld, &Plan::default()).await?;
        let zone = zones::restore(&self.firewalld, &self.state).await?;
        Ok((rules, zone))
    }
}
