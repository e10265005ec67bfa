//! One reconcile outside the daemon: `dockgated --once` applies the policy once, `--remove`
//! undoes everything, `dockgatectl docker-prestart` returns the bridges.

use std::time::{Duration, Instant};

use crate::apply::{Applier, ApplyError, Outcome};
use crate::config::Config;
use crate::docker::{Docker, DockerApi, DockerError};
use crate::exposures::{self, StoreError, Stored};
use crate::firewalld::Firewall;
use crate::plan::{self, Desired, Inputs};
use crate::rebuild;
use crate::zones::Binding;

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("Docker is not reachable: {0}; start it first (systemctl start docker)")]
    Docker(#[from] DockerError),
    #[error("runtime exposures: {0}")]
    Exposures(#[from] StoreError),
}

/// What `--once` did.
#[derive(Debug, Clone)]
pub struct Once {
    pub rules: usize,
    pub outcome: Outcome,
    pub duration: Duration,
}

/// Applies the config and the runtime exposures (taking out expired ones) once; fails when
/// firewalld or Docker is down.
pub async fn once<F: Firewall>(
    applier: &Applier<F>,
    docker: &Docker,
    config: &Config,
) -> Result<Once, ReconcileError> {
    let started = Instant::now();
    if !applier
        .firewall
        .is_running()
        .await
        .map_err(ApplyError::from)?
    {
        return Err(ApplyError::FirewalldNotRunning.into());
    }
    let view = docker.view().await?;
    // Expired exposures are left out by the clock; the daemon takes them out of the file.
    let (store, _) = Stored::load(&applier.state)?.expire(exposures::unix_now());
    let mut desired = plan::desired(&Inputs {
        config,
        runtime: store.all(),
        docker: &view,
        docker_up: true,
        rebuilding: false,
    });
    // Before the apply, which may reload: Docker's rebuild ends after this second.
    let since = exposures::unix_now();
    let mut outcome = applier.runtime_phase(&desired).await?;
    applier.permanent_phase(&desired, &mut outcome).await?;
    if outcome.reloaded && plan::waits_for_docker_rebuild(config) {
        // Not the daemon: a one-shot command may simply wait for Docker's rebuild, then bind
        // and put the reject back in front, as the daemon does then.
        if !rebuild::wait_until_over(&applier.firewall, docker, since, &view.ports).await {
            tracing::warn!(
                "Docker's rebuild after the reload was not seen to end within {:?}; going on",
                rebuild::MAX_WAIT
            );
        }
        desired.reseat_verdict = true;
        let again = applier.runtime_phase(&desired).await?;
        outcome.writes += again.writes;
    }
    applier.bridges_phase(&desired, &mut outcome).await?;
    Ok(Once {
        rules: desired.plan.rules.len(),
        outcome,
        duration: started.elapsed(),
    })
}

/// Takes out every rule and chain dockgate added (both layers), puts zone docker's settings
/// and CleanupOnExit back as dockgate found them and the bridges back in zone docker.
pub async fn remove<F: Firewall>(applier: &Applier<F>) -> Result<Outcome, ApplyError> {
    applier.apply(&Desired::nothing()).await
}

/// Bridges dockgate bound elsewhere back to zone docker, so that Docker can start; needs
/// firewalld only. Returns the bridges moved.
pub async fn return_bridges<F: Firewall>(applier: &Applier<F>) -> Result<Vec<String>, ApplyError> {
    let desired = Desired {
        bridges: Binding::Return,
        ..Desired::nothing()
    };
    applier
        .bridges_phase(&desired, &mut Outcome::default())
        .await
}
