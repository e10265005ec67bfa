//! The long-running dockgated: one task owns the config, the runtime exposures and the
//! applier; watchers of firewalld, Docker and signals, and the D-Bus handlers, only send it
//! messages. When to reconcile is the [`Scheduler`]'s call; nothing transient ends the daemon.
//!
//! Readiness: the bus name is taken after the first reconcile attempt, so whoever sees it
//! (systemd for `Type=dbus`, a script, a GUI) finds the policy in force, or firewalld found
//! down and `FirewalldConnected` saying so.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::mpsc;
use zbus::object_server::InterfaceRef;

use crate::api::{self, Api, ApiError, Call, ExposureRow, PortRow, Properties, Reply, Status};
use crate::apply::{Applier, ApplyError, Outcome};
use crate::config::Config;
use crate::diff;
use crate::docker::{Docker, DockerEvent};
use crate::exposures::{self, Listed, Store, StoreError};
use crate::firewalld::{Firewall, Firewalld, FirewalldError, Presence, ZoneEvent};
use crate::plan::{self, Desired, Inputs, Plan};
use crate::reconcile::docker_view;
use crate::scheduler::{Batch, Scheduler, Trigger};
use crate::zones::{self, Binding};

#[derive(Debug)]
pub enum Message {
    Trigger(Trigger),
    /// SIGHUP: read the config again.
    ReloadConfig,
    /// SIGTERM or SIGINT: exit, leaving the rules in place.
    Shutdown,
    /// A D-Bus caller's change; answered once it is in the kernel.
    Call(Call, Reply),
}

/// What the admin and the callers want: the config and the runtime exposures.
struct Wanted {
    config_path: PathBuf,
    config: Config,
    /// Runtime exposures; expired ones are taken out before every reconcile.
    store: Store,
}

impl Wanted {
    fn listed(&self) -> Vec<Listed> {
        exposures::listed(&self.config, self.store.all())
    }

    /// When the next runtime exposure expires.
    fn next_expiry(&self) -> Option<Instant> {
        self.store.next_expiry().map(|at| {
            Instant::now() + Duration::from_secs(at.saturating_sub(exposures::unix_now()))
        })
    }
}

/// A D-Bus caller waiting for the reconcile that carries out its call.
struct Waiting {
    reply: Reply,
    /// What to answer on success (the new exposure's id for Expose).
    answer: String,
    /// Answered as soon as the kernel holds the new rules (Expose, Unexpose): the permanent
    /// layer, zone docker and the bridges are the same whatever the caller asked for. Other
    /// calls wait for the whole reconcile.
    in_kernel_is_enough: bool,
}

#[derive(Default)]
struct Callers(Vec<Waiting>);

impl Callers {
    fn wait(&mut self, reply: Reply, answer: String, in_kernel_is_enough: bool) {
        self.0.push(Waiting {
            reply,
            answer,
            in_kernel_is_enough,
        });
    }

    /// The kernel holds the rules: those for whom that is enough hear it now.
    fn answer_in_kernel(&mut self) {
        let (now, later) = std::mem::take(&mut self.0)
            .into_iter()
            .partition(|caller| caller.in_kernel_is_enough);
        self.0 = later;
        for Waiting { reply, answer, .. } in now {
            // A dropped reply is a caller that went away: nothing to tell.
            let _ = reply.send(Ok(answer));
        }
    }

    fn answer_all(&mut self, outcome: Result<(), &ApplyError>) {
        for Waiting { reply, answer, .. } in self.0.drain(..) {
            let _ = reply.send(match outcome {
                Ok(()) => Ok(answer),
                Err(error) if firewalld_down(error) => Err(ApiError::FirewallUnavailable(
                    "firewalld is not running; the change is saved and applied when it is".into(),
                )),
                Err(error) => Err(ApiError::Failed(format!(
                    "{error}; the change is saved and retried"
                ))),
            });
        }
    }
}

fn firewalld_down(error: &ApplyError) -> bool {
    matches!(
        error,
        ApplyError::FirewalldNotRunning | ApplyError::Firewalld(FirewalldError::NotRunning)
    )
}

/// What the API answers from, and what was last announced of it.
struct Publisher {
    status: Arc<Mutex<Status>>,
    properties: Properties,
    ports: Vec<PortRow>,
    exposures: Vec<ExposureRow>,
}

impl Publisher {
    fn new(status: Status) -> Self {
        Publisher {
            properties: status.properties(),
            ports: status.port_rows(),
            exposures: status.exposure_rows(),
            status: Arc::new(Mutex::new(status)),
        }
    }

    fn update(&self, change: impl FnOnce(&mut Status)) {
        change(&mut self.status.lock().expect("status lock"));
    }

    /// PropertiesChanged for the properties whose value changed since they were last
    /// announced, PortsChanged and ExposuresChanged when ListPorts or ListExposures would
    /// answer differently.
    async fn announce(&mut self, api: Option<&InterfaceRef<Api>>) {
        let (properties, ports, exposures) = {
            let status = self.status.lock().expect("status lock");
            (
                status.properties(),
                status.port_rows(),
                status.exposure_rows(),
            )
        };
        let before = std::mem::replace(&mut self.properties, properties.clone());
        let ports_changed = std::mem::replace(&mut self.ports, ports) != self.ports;
        let exposures_changed = std::mem::replace(&mut self.exposures, exposures) != self.exposures;
        let Some(api) = api else { return };
        let emitter = api.signal_emitter();
        let mut results = Vec::new();
        if exposures_changed {
            results.push(Api::exposures_changed(emitter).await);
        }
        if ports_changed {
            results.push(Api::ports_changed(emitter).await);
        }
        let interface = api.get().await;
        if before.rule_count != properties.rule_count {
            results.push(interface.rule_count_changed(emitter).await);
        }
        if before.last_reconcile != properties.last_reconcile {
            results.push(interface.last_reconcile_changed(emitter).await);
        }
        if before.firewalld_connected != properties.firewalld_connected {
            results.push(interface.firewalld_connected_changed(emitter).await);
        }
        if before.docker_connected != properties.docker_connected {
            results.push(interface.docker_connected_changed(emitter).await);
        }
        if before.default != properties.default {
            results.push(interface.default_changed(emitter).await);
        }
        if before.verdict != properties.verdict {
            results.push(interface.verdict_changed(emitter).await);
        }
        if before.bridge_zone != properties.bridge_zone {
            results.push(interface.bridge_zone_changed(emitter).await);
        }
        for error in results.into_iter().filter_map(Result::err) {
            tracing::warn!(%error, "cannot emit a signal");
        }
    }
}

/// Whether something waits for Docker's rebuild after a firewalld reload: binding the bridges,
/// or putting the reject back ahead of Docker's rules in filter FORWARD.
fn needs_docker_rebuilt(config: &Config) -> bool {
    config.zone.bind.is_some() || config.verdict == crate::config::Verdict::Reject
}

/// The zone the bridges are bound to while Docker runs.
fn bridge_zone(config: &Config) -> String {
    config
        .zone
        .bind
        .clone()
        .unwrap_or_else(|| zones::DOCKER_ZONE.to_owned())
}

fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_micros() as u64)
}

pub struct Daemon {
    applier: Applier<Firewalld>,
    docker: Docker,
    wanted: Wanted,
    scheduler: Scheduler,
    callers: Callers,
    publisher: Publisher,
    /// What the last successful reconcile applied: Docker's events that leave it unchanged
    /// need no firewalld call at all.
    applied: Option<(Plan, Vec<String>)>,
    /// Whether Docker's event stream says dockerd runs (None: not heard yet). While it is
    /// stopping, its API may still answer, but its bridges must go back to zone docker.
    docker_running: Option<bool>,
    /// The system bus to serve the D-Bus API on; None serves none.
    bus: Option<zbus::Connection>,
}

impl Daemon {
    pub fn new(
        applier: Applier<Firewalld>,
        docker: Docker,
        config_path: PathBuf,
        config: Config,
        store: Store,
        bus: Option<zbus::Connection>,
    ) -> Self {
        let wanted = Wanted {
            config_path,
            config,
            store,
        };
        // The config and the saved exposures are known at once; firewalld and Docker once
        // the first reconcile has looked.
        let status = Status {
            bridge_zone: bridge_zone(&wanted.config),
            config: wanted.config.clone(),
            exposures: wanted.listed(),
            ..Status::default()
        };
        let mut scheduler = Scheduler::new(now());
        scheduler.reconcile_after_rebuild(needs_docker_rebuilt(&wanted.config));
        Daemon {
            applier,
            docker,
            wanted,
            scheduler,
            callers: Callers::default(),
            publisher: Publisher::new(status),
            applied: None,
            docker_running: None,
            bus,
        }
    }

    pub async fn run(mut self) {
        let (sender, mut inbox) = mpsc::channel(1024);
        tokio::spawn(watch_firewalld(
            self.applier.firewall.clone(),
            sender.clone(),
        ));
        tokio::spawn(watch_docker(self.docker.watch(), sender.clone()));
        tokio::spawn(watch_signals(sender.clone()));
        // The first reconcile before the name is taken: whoever sees the name finds the policy
        // in force (or firewalld down, and FirewalldConnected saying so).
        if let Some(batch) = self.scheduler.take_due(now(), None) {
            self.reconcile(batch, None).await;
        }
        let api = self.serve_api(sender).await;
        self.publisher.announce(api.as_ref()).await;
        loop {
            let expiry = self.wanted.next_expiry();
            let message = match self.scheduler.next_wake(expiry) {
                Some(at) => tokio::select! {
                    message = inbox.recv() => Some(message),
                    () = tokio::time::sleep_until(tokio::time::Instant::from_std(at)) => None,
                },
                None => Some(inbox.recv().await),
            };
            let keep_running = match message {
                Some(Some(message)) => self.handle(message),
                Some(None) => false,
                // A timer is due.
                None => true,
            };
            if !keep_running {
                return;
            }
            // What is queued already goes into the same reconcile.
            while let Ok(message) = inbox.try_recv() {
                if !self.handle(message) {
                    return;
                }
            }
            if let Some(batch) = self.scheduler.take_due(now(), expiry) {
                self.reconcile(batch, api.as_ref()).await;
            }
        }
    }

    /// Puts the API on the bus; None (logged) when that fails: the policy is kept all the same.
    async fn serve_api(&self, sender: mpsc::Sender<Message>) -> Option<InterfaceRef<Api>> {
        let connection = self.bus.as_ref()?;
        let (calls, mut incoming) = mpsc::channel::<(Call, Reply)>(64);
        tokio::spawn(async move {
            while let Some((call, reply)) = incoming.recv().await {
                if sender.send(Message::Call(call, reply)).await.is_err() {
                    return;
                }
            }
        });
        let api = Api {
            calls,
            status: self.publisher.status.clone(),
        };
        let served = async {
            connection.object_server().at(api::OBJECT_PATH, api).await?;
            connection.request_name(api::BUS_NAME).await?;
            connection
                .object_server()
                .interface::<_, Api>(api::OBJECT_PATH)
                .await
        };
        match served.await {
            Ok(interface) => {
                tracing::info!(name = api::BUS_NAME, "D-Bus API served");
                Some(interface)
            }
            Err(error) => {
                tracing::error!(%error, name = api::BUS_NAME, "cannot serve the D-Bus API");
                None
            }
        }
    }

    /// Handles one message; false when the daemon is to exit.
    fn handle(&mut self, message: Message) -> bool {
        match message {
            Message::Trigger(trigger) => {
                match trigger {
                    Trigger::DockerConnected => self.docker_running = Some(true),
                    Trigger::DockerStopped => self.docker_running = Some(false),
                    _ => {}
                }
                self.scheduler.add(trigger, now());
            }
            Message::ReloadConfig => {
                let _ = self.reload_config(None);
            }
            Message::Call(call, reply) => self.handle_call(call, reply),
            Message::Shutdown => {
                tracing::info!("exiting; the rules stay in place");
                return false;
            }
        }
        true
    }

    /// Reads the config again (SIGHUP, or ReloadConfig by `uid`); a bad one is refused and the
    /// last good policy stays.
    fn reload_config(&mut self, uid: Option<u32>) -> Result<(), String> {
        let path = &self.wanted.config_path;
        match Config::load(path) {
            Ok(config) => {
                tracing::info!(path = %path.display(), uid, "config reloaded");
                self.scheduler
                    .reconcile_after_rebuild(needs_docker_rebuilt(&config));
                self.wanted.config = config;
                self.scheduler.add(Trigger::ConfigReloaded { uid }, now());
                Ok(())
            }
            Err(error) => {
                tracing::error!(%error, uid, "new config refused; keeping the last good policy");
                Err(format!("{error}; the last good config stays in force"))
            }
        }
    }

    /// A caller's change: saved at once, answered after the reconcile that applies it.
    fn handle_call(&mut self, call: Call, reply: Reply) {
        match call {
            Call::Expose {
                exposure,
                ttl_seconds,
                uid,
            } => match self
                .wanted
                .store
                .add(exposure, ttl_seconds, uid, exposures::unix_now())
            {
                Ok(id) => {
                    self.scheduler.add(
                        Trigger::Expose {
                            id: id.clone(),
                            uid,
                        },
                        now(),
                    );
                    self.callers.wait(reply, id, true);
                }
                Err(error) => {
                    let _ = reply.send(Err(ApiError::Failed(error.to_string())));
                }
            },
            Call::Unexpose { id, uid } => {
                let listed = self.wanted.listed();
                if listed
                    .iter()
                    .any(|entry| entry.id == id && entry.origin == exposures::Origin::Config)
                {
                    let _ = reply.send(Err(ApiError::ReadOnly(format!(
                        "{id} comes from {}; change it there",
                        self.wanted.config_path.display()
                    ))));
                    return;
                }
                match self.wanted.store.remove(&id) {
                    Ok(_) => {
                        self.scheduler.add(Trigger::Unexpose { id, uid }, now());
                        self.callers.wait(reply, String::new(), true);
                    }
                    Err(StoreError::NotFound(_)) => {
                        let _ = reply.send(Err(ApiError::NotFound(format!("no exposure {id}"))));
                    }
                    Err(error) => {
                        let _ = reply.send(Err(ApiError::Failed(error.to_string())));
                    }
                }
            }
            Call::Reconcile { uid } => {
                self.scheduler.add(Trigger::Reconcile { uid }, now());
                self.callers.wait(reply, String::new(), false);
            }
            Call::ReloadConfig { uid } => match self.reload_config(Some(uid)) {
                Ok(()) => self.callers.wait(reply, String::new(), false),
                Err(message) => {
                    let _ = reply.send(Err(ApiError::Failed(message)));
                }
            },
        }
    }

    /// firewalld before 2.0 does not delete its own nftables table when it starts: with
    /// CleanupOnExit=no (which dockgate sets) every restart adds all of firewalld's rules once
    /// more (firewalld#1192; seen in the sandbox: +90 lines per restart on 1.3.3, and the
    /// restarts themselves grow slower). A reload clears them, but reloading on our own right
    /// when firewalld comes back, while Docker rebuilds, risks Docker 28's reload deadlock
    /// (moby/moby#50619), so the admin is told instead.
    async fn warn_if_firewalld_keeps_copies(&self) {
        let firewalld = &self.applier.firewall;
        let (Ok(major), Ok(cleanup)) = (
            firewalld.major_version().await,
            firewalld.cleanup_on_exit().await,
        ) else {
            return;
        };
        if major < 2 && !diff::cleans_up_on_exit(&cleanup) {
            tracing::warn!(
                "firewalld before 2.0 keeps its old nftables rules when it starts with CleanupOnExit=no and adds them again; `firewall-cmd --reload` at a quiet moment removes the copies (firewalld#1192)"
            );
        }
    }

    /// One reconcile for a batch of triggers, then the status, the signals and the callers.
    async fn reconcile(&mut self, batch: Batch, api: Option<&InterfaceRef<Api>>) {
        let started = now();
        let trigger = batch.to_string();
        if batch.contains(&Trigger::FirewalldStarted) {
            self.warn_if_firewalld_keeps_copies().await;
        }
        tracing::debug!(trigger, "reconciling");
        match self.wanted.store.expire(exposures::unix_now()) {
            Ok(expired) => {
                for exposure in expired {
                    tracing::info!(id = exposure.id, port = %exposure.port, owner_uid = exposure.owner_uid, "exposure expired");
                }
            }
            Err(error) => tracing::error!(%error, "cannot take out expired exposures"),
        }
        let (view, docker_answered) = match docker_view(&self.docker).await {
            Ok(view) => (view, true),
            Err(error) => {
                // Apply without Docker's view (Docker's own bridge names are still judged),
                // so that Docker, when it starts, meets the policy.
                tracing::warn!(%error, "Docker is not reachable; applying the policy without its view");
                (plan::DockerView::default(), false)
            }
        };
        tracing::debug!(
            ports = view.ports.len(),
            bridges = view.bridges.len(),
            "Docker read"
        );
        let config = self.wanted.config.clone();
        let inputs = Inputs {
            config: &config,
            runtime: self.wanted.store.all(),
            docker: &view,
            docker_up: docker_answered && self.docker_running != Some(false),
            rebuilding: self.scheduler.docker_rebuilding(),
        };
        let listed = inputs.listed();
        let mut desired = plan::desired(&inputs);
        desired.reseat_verdict = batch.contains(&Trigger::DockerRebuilt);
        let status_now = |status: &mut Status| {
            status.docker_connected = docker_answered;
            status.config = config.clone();
            status.bridge_zone = bridge_zone(&config);
            status.exposures = listed.clone();
            status.ports = view.ports.clone();
        };

        if batch.only_docker_events()
            && !self.scheduler.retrying()
            && self.applied.as_ref() == Some(&(desired.plan.clone(), view.bridges.clone()))
        {
            tracing::debug!(trigger, "Docker changed nothing dockgate enforces");
            self.publisher.update(status_now);
            self.publisher.announce(api).await;
            return;
        }

        let result = self.apply(&mut desired, &status_now).await;
        match &result {
            Ok(outcome) => {
                self.scheduler.succeeded(now());
                self.applied = Some((desired.plan.clone(), view.bridges.clone()));
                let zones_known = self
                    .publisher
                    .status
                    .lock()
                    .expect("status lock")
                    .host_zones
                    .is_some();
                let host_zones = if batch.may_change_zones() || !zones_known {
                    self.applier.firewall.host_zones().await.ok()
                } else {
                    None
                };
                self.publisher.update(|status| {
                    status_now(status);
                    status.firewalld_connected = true;
                    status.rule_count = desired.plan.rules.len() as u32;
                    status.last_reconcile = unix_micros();
                    if host_zones.is_some() {
                        status.host_zones = host_zones;
                    }
                });
                tracing::info!(
                    trigger,
                    rules = desired.plan.rules.len(),
                    added = outcome.rules_added,
                    removed = outcome.rules_removed,
                    writes = outcome.writes,
                    bridges_moved = outcome.bridges_moved,
                    reloaded = outcome.reloaded,
                    duration_ms = started.elapsed().as_millis() as u64,
                    "reconciled"
                );
            }
            Err(error) => {
                self.applied = None;
                let wait = self.scheduler.failed(now());
                tracing::warn!(trigger, %error, retry_in_ms = wait.as_millis() as u64, "reconcile failed");
                self.publisher.update(|status| {
                    status_now(status);
                    status.firewalld_connected = !firewalld_down(error);
                });
            }
        }
        self.callers.answer_all(result.as_ref().map(|_| ()));
        if let (Some(api), Ok(_)) = (api, &result) {
            let rules = desired.plan.rules.len() as u32;
            let duration_us = started.elapsed().as_micros() as u64;
            if let Err(error) =
                Api::reconciled(api.signal_emitter(), &trigger, rules, duration_us).await
            {
                tracing::warn!(%error, "cannot emit Reconciled");
            }
        }
        self.publisher.announce(api).await;
    }

    /// The applier's phases, with the callers answered once the kernel holds the rules.
    async fn apply(
        &mut self,
        desired: &mut Desired,
        status_now: &impl Fn(&mut Status),
    ) -> Result<Outcome, ApplyError> {
        let mut outcome = self.applier.runtime_phase(desired).await?;
        tracing::debug!(writes = outcome.writes, "the kernel holds the rules");
        if outcome.reloaded {
            // Docker rebuilds after the reload just made: the bridges wait for it.
            self.scheduler.firewalld_reloaded_by_us(now());
            if matches!(desired.bridges, Binding::Bind { .. }) {
                desired.bridges = Binding::Leave;
            }
        }
        // What a caller reads right after its answer: the rules now in the kernel.
        self.publisher.update(|status| {
            status_now(status);
            status.rule_count = desired.plan.rules.len() as u32;
        });
        self.callers.answer_in_kernel();
        self.applier.permanent_phase(desired, &mut outcome).await?;
        let moved = self.applier.bridges_phase(desired, &mut outcome).await?;
        if !moved.is_empty() {
            tracing::info!(?moved, bound_to = ?desired.bridges, "bridges moved");
        }
        Ok(outcome)
    }
}

/// The scheduler's clock.
fn now() -> Instant {
    Instant::now()
}

async fn watch_firewalld(firewalld: Firewalld, sender: mpsc::Sender<Message>) {
    loop {
        let streams = async {
            Ok::<_, FirewalldError>((
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
        let mut triggers = futures_util::stream::select(
            futures_util::stream::select(
                reloaded.map(|()| Some(Trigger::FirewalldReloaded)),
                presence.map(|presence| match presence {
                    Presence::Appeared => Some(Trigger::FirewalldStarted),
                    Presence::Vanished => {
                        tracing::warn!("firewalld left the bus");
                        None
                    }
                }),
            ),
            zone_events.map(|event| match event {
                ZoneEvent::InterfaceAdded { zone, interface }
                | ZoneEvent::ZoneOfInterfaceChanged { zone, interface } => {
                    Some(Trigger::BridgeMoved { interface, zone })
                }
                ZoneEvent::InterfaceRemoved { .. } => None,
                ZoneEvent::AccessChanged { zone } => Some(Trigger::ZoneChanged { zone }),
            }),
        );
        while let Some(trigger) = triggers.next().await {
            if let Some(trigger) = trigger
                && sender.send(Message::Trigger(trigger)).await.is_err()
            {
                return;
            }
        }
    }
}

async fn watch_docker(mut events: mpsc::Receiver<DockerEvent>, sender: mpsc::Sender<Message>) {
    while let Some(event) = events.recv().await {
        let trigger = match event {
            DockerEvent::Container { action, .. }
                if matches!(action.as_str(), "start" | "die" | "destroy") =>
            {
                Trigger::Container { action }
            }
            DockerEvent::Network { action, .. }
                if matches!(
                    action.as_str(),
                    "create" | "destroy" | "connect" | "disconnect"
                ) =>
            {
                Trigger::Network { action }
            }
            DockerEvent::Container { .. } | DockerEvent::Network { .. } => continue,
            DockerEvent::Disconnected => Trigger::DockerStopped,
            DockerEvent::Resynced => Trigger::DockerConnected,
        };
        if sender.send(Message::Trigger(trigger)).await.is_err() {
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
