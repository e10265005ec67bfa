//! The long-running dockgated: one task owns the config and applies it; watchers of firewalld,
//! Docker and signals only send it messages. Bursts of events are coalesced into one
//! reconcile, and a failed reconcile is retried with backoff: nothing transient ends the daemon.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::Config;
use crate::docker::DockerEvent;
use crate::exposures::{self, Store};
use crate::firewalld::{Presence, ZoneEvent};
use crate::plan::{DockerView, Plan};
use crate::reconcile::{Enforcer, plan_for};
use crate::zones;

/// After a firewalld reload or start, Docker re-inserts its bridges into zone docker and
/// rebuilds its rules; binding a bridge elsewhere in the middle of that made Docker 20.10 leave
/// its DNAT out (seen in the sandbox). The bridges are bound again only after this pause.
const DOCKER_REBUILD_PAUSE: Duration = Duration::from_secs(2);

/// How long to wait for more events after the first one before reconciling: Docker starting a
/// hundred containers sends hundreds of events within a few hundred milliseconds.
const COALESCE: Duration = Duration::from_millis(100);
/// While Docker's events keep coming (a burst of container starts takes Docker seconds), at most
/// one reconcile per this interval for them. Waiting is safe: a container nobody exposed yet is
/// denied until the reconcile. firewalld and config triggers do not wait.
const DOCKER_BURST_GAP: Duration = Duration::from_secs(1);
const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub enum Message {
    /// Something changed; the text says what, for the log.
    Changed(String),
    /// Docker's event stream ended: dockerd is stopping or restarting.
    DockerGone,
    /// Docker's event stream is (re)connected: dockerd is up and has put its bridges into zone
    /// docker.
    DockerBack,
    /// SIGHUP: read the config again.
    ReloadConfig,
    /// SIGTERM or SIGINT: exit, leaving the rules in place.
    Shutdown,
}

pub struct Daemon {
    pub enforcer: Enforcer,
    pub config_path: PathBuf,
    pub config: Config,
    /// Runtime exposures; expired ones are taken out before every reconcile.
    pub exposures: Store,
}

impl Daemon {
    pub async fn run(mut self) {
        let (sender, mut inbox) = mpsc::channel(1024);
        tokio::spawn(watch_firewalld(
            self.enforcer.firewalld.clone(),
            sender.clone(),
        ));
        tokio::spawn(watch_docker(self.enforcer.docker.watch(), sender.clone()));
        tokio::spawn(watch_signals(sender.clone()));

        let mut triggers: BTreeSet<String> = BTreeSet::from(["start".to_owned()]);
        let mut retry_at: Option<Instant> = None;
        let mut retry_delay = FIRST_RETRY;
        let mut bind_at: Option<Instant> = None;
        // What the last successful reconcile applied: Docker's events that leave it unchanged
        // need no firewalld call at all.
        let mut applied: Option<(Plan, Vec<String>)> = None;
        let mut last_reconcile: Option<Instant> = None;
        loop {
            if triggers.is_empty() {
                let expiry_at = self.exposures.next_expiry().map(|at| {
                    Instant::now() + Duration::from_secs(at.saturating_sub(exposures::unix_now()))
                });
                let wake = [retry_at, bind_at, expiry_at].into_iter().flatten().min();
                let message = match wake {
                    Some(at) => match tokio::time::timeout_at(at, inbox.recv()).await {
                        Ok(message) => message,
                        Err(_) => {
                            if retry_at.is_some_and(|at| at <= Instant::now()) {
                                triggers.insert("retry".to_owned());
                                retry_at = None;
                            }
                            if bind_at.is_some_and(|at| at <= Instant::now()) {
                                triggers.insert("bind after Docker's rebuild".to_owned());
                                bind_at = None;
                            }
                            if expiry_at.is_some_and(|at| at <= Instant::now()) {
                                triggers.insert("exposure expired".to_owned());
                            }
                            continue;
                        }
                    },
                    None => inbox.recv().await,
                };
                let Some(message) = message else { return };
                if !self.handle(message, &mut triggers, bind_at).await {
                    return;
                }
            }
            // Coalesce: take everything that arrives shortly after the first event, and while
            // only Docker is talking, until a burst gap has passed since the last reconcile.
            let first = Instant::now();
            loop {
                let mut deadline = first + COALESCE;
                if let Some(last) = last_reconcile
                    && only_docker_events(&triggers)
                {
                    deadline = deadline.max(last + DOCKER_BURST_GAP);
                }
                match tokio::time::timeout_at(deadline, inbox.recv()).await {
                    Ok(Some(message)) => {
                        if !self.handle(message, &mut triggers, bind_at).await {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            if triggers.is_empty() {
                continue;
            }
            let trigger = triggers.iter().cloned().collect::<Vec<_>>().join(",");
            let firewalld_restarted = triggers
                .iter()
                .any(|t| t == "firewalld reloaded" || t == "firewalld started");
            let trigger_set = std::mem::take(&mut triggers);
            let bind_now = match (&self.config.zone.bind, firewalld_restarted) {
                (Some(_), true) => {
                    bind_at = Some(Instant::now() + DOCKER_REBUILD_PAUSE);
                    false
                }
                _ => bind_at.is_none(),
            };

            tracing::debug!(trigger, "reconciling");
            match self.exposures.expire(exposures::unix_now()) {
                Ok(expired) => {
                    for exposure in expired {
                        tracing::info!(id = exposure.id, port = %exposure.port, owner_uid = exposure.owner_uid, "exposure expired");
                    }
                }
                Err(error) => tracing::error!(%error, "cannot take out expired exposures"),
            }
            let view = match self.enforcer.docker_view().await {
                Ok(view) => view,
                Err(error) => {
                    // Apply without Docker's view (Docker's own bridge names are still
                    // judged), so that Docker, when it starts, meets the policy.
                    tracing::warn!(%error, "Docker is not reachable; applying the policy without its view");
                    DockerView::default()
                }
            };
            tracing::debug!(
                ports = view.ports.len(),
                bridges = view.bridges.len(),
                "Docker read"
            );
            if only_docker_events(&trigger_set) && retry_at.is_none() && bind_at.is_none() {
                let wanted = (
                    plan_for(&self.config, self.exposures.all(), &view),
                    view.bridges.clone(),
                );
                if applied.as_ref() == Some(&wanted) {
                    tracing::debug!(trigger, "Docker changed nothing dockgate enforces");
                    continue;
                }
            }
            match self
                .enforcer
                .reconcile_with(&self.config, self.exposures.all(), &view, bind_now)
                .await
            {
                Ok(done) => {
                    retry_delay = FIRST_RETRY;
                    retry_at = None;
                    last_reconcile = Some(Instant::now());
                    applied = Some((done.plan.clone(), view.bridges.clone()));
                    tracing::info!(
                        trigger,
                        rules = done.plan.rules.len(),
                        added = done.rules.rules_added,
                        removed = done.rules.rules_removed,
                        writes = done.writes(),
                        bridges_bound = done.bridges_bound,
                        reloaded = done.reloaded,
                        duration_ms = done.duration.as_millis() as u64,
                        "reconciled"
                    );
                }
                Err(error) => {
                    applied = None;
                    tracing::warn!(trigger, %error, retry_in_ms = retry_delay.as_millis() as u64, "reconcile failed");
                    retry_at = Some(Instant::now() + retry_delay);
                    retry_delay = (retry_delay * 2).min(MAX_RETRY);
                }
            }
        }
    }

    /// Handles one message; false when the daemon is to exit.
    async fn handle(
        &mut self,
        message: Message,
        triggers: &mut BTreeSet<String>,
        bind_at: Option<Instant>,
    ) -> bool {
        match message {
            Message::DockerBack => {
                triggers.insert("docker connected".to_owned());
                // Docker is up with its bridges in zone docker: bind them at once rather than
                // after the coalescing window, unless firewalld is still being rebuilt by
                // Docker (then the pause after the reload applies).
                if let Some(bind) = &self.config.zone.bind
                    && bind_at.is_none()
                {
                    self.bind_bridges_now(bind).await;
                }
            }
            Message::Changed(what) => {
                triggers.insert(what);
            }
            Message::DockerGone => {
                triggers.insert("docker stopped".to_owned());
                if self.config.zone.bind.is_some() {
                    // dockerd may be restarting without docker.service's prestart (a plain
                    // `dockerd` or a kill): give it its bridges back before it starts again.
                    match zones::return_bridges(&self.enforcer.firewalld, &self.enforcer.state)
                        .await
                    {
                        Ok(returned) => {
                            tracing::info!(?returned, "bridges returned to zone docker")
                        }
                        Err(error) => {
                            tracing::warn!(%error, "cannot return bridges to zone docker")
                        }
                    }
                }
            }
            Message::ReloadConfig => match Config::load(&self.config_path) {
                Ok(config) => {
                    tracing::info!(path = %self.config_path.display(), "config reloaded");
                    self.config = config;
                    triggers.insert("config reloaded".to_owned());
                }
                Err(error) => {
                    tracing::error!(%error, "new config refused; keeping the last good policy")
                }
            },
            Message::Shutdown => {
                tracing::info!("exiting; the rules stay in place");
                return false;
            }
        }
        true
    }
}

/// True when every trigger is a container or network event from Docker's stream.
fn only_docker_events(triggers: &BTreeSet<String>) -> bool {
    !triggers.is_empty()
        && triggers
            .iter()
            .all(|t| t.starts_with("container ") || t.starts_with("network "))
}

impl Daemon {
    async fn bind_bridges_now(&self, zone: &str) {
        let started = Instant::now();
        let bridges = match self.enforcer.docker_view().await {
            Ok(view) => view.bridges,
            Err(error) => {
                tracing::warn!(%error, "cannot read Docker's bridges");
                return;
            }
        };
        match zones::bind_bridges(
            &self.enforcer.firewalld,
            &self.enforcer.state,
            zone,
            &bridges,
        )
        .await
        {
            Ok(bound) => tracing::info!(
                zone,
                bound,
                duration_ms = started.elapsed().as_millis() as u64,
                "Docker is up; bridges bound"
            ),
            Err(error) => tracing::warn!(%error, zone, "cannot bind Docker's bridges"),
        }
    }
}

async fn watch_firewalld(firewalld: crate::firewalld::Firewalld, sender: mpsc::Sender<Message>) {
    loop {
        let streams = async {
            Ok::<_, crate::firewalld::FirewalldError>((
                firewalld.reloaded().await?,
                firewalld.presence().await?,
                firewalld.zone_events().await?,
            ))
        };
        let (reloaded, presence, zone_events) = match streams.await {
            Ok(streams) => streams,
            Err(error) => {
                tracing::warn!(%error, "cannot subscribe to firewalld's signals; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut messages = futures_util::stream::select(
            futures_util::stream::select(
                reloaded.map(|()| Some("firewalld reloaded".to_owned())),
                presence.map(|presence| match presence {
                    Presence::Appeared => Some("firewalld started".to_owned()),
                    Presence::Vanished => {
                        tracing::warn!("firewalld left the bus");
                        None
                    }
                }),
            ),
            zone_events.map(|event| match event {
                ZoneEvent::InterfaceAdded { zone, interface }
                | ZoneEvent::ZoneOfInterfaceChanged { zone, interface } => {
                    Some(format!("{interface} moved to zone {zone}"))
                }
                ZoneEvent::InterfaceRemoved { .. } => None,
            }),
        );
        while let Some(message) = messages.next().await {
            if let Some(what) = message
                && sender.send(Message::Changed(what)).await.is_err()
            {
                return;
            }
        }
    }
}

async fn watch_docker(mut events: mpsc::Receiver<DockerEvent>, sender: mpsc::Sender<Message>) {
    while let Some(event) = events.recv().await {
        let message = match event {
            DockerEvent::Container { action, .. }
                if matches!(action.as_str(), "start" | "die" | "destroy") =>
            {
                Message::Changed(format!("container {action}"))
            }
            DockerEvent::Network { action, .. }
                if matches!(
                    action.as_str(),
                    "create" | "destroy" | "connect" | "disconnect"
                ) =>
            {
                Message::Changed(format!("network {action}"))
            }
            DockerEvent::Container { .. } | DockerEvent::Network { .. } => continue,
            DockerEvent::Disconnected => Message::DockerGone,
            DockerEvent::Resynced => Message::DockerBack,
        };
        if sender.send(message).await.is_err() {
            return;
        }
    }
}

async fn watch_signals(sender: mpsc::Sender<Message>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut hangup), Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    loop {
        let message = tokio::select! {
            _ = hangup.recv() => Message::ReloadConfig,
            _ = terminate.recv() => Message::Shutdown,
            _ = interrupt.recv() => Message::Shutdown,
        };
        if sender.send(message).await.is_err() {
            return;
        }
    }
}
