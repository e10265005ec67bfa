//! The long-running dockgated: one task owns the config and applies it; watchers of firewalld,
//! Docker and signals only send it messages. Bursts of events are coalesced into one
//! reconcile, and a failed reconcile is retried with backoff: nothing transient ends the daemon.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use zbus::object_server::InterfaceRef;

use crate::api::{self, Api, ApiError, Call, PortRow, Properties, Reply, Status};
use crate::config::Config;
use crate::docker::DockerEvent;
use crate::exposures::{self, Store, StoreError};
use crate::firewalld::{Presence, ZoneEvent};
use crate::plan::{DockerView, Plan};
use crate::reconcile::{Enforcer, ReconcileError, Reconciled, plan_for};
use crate::zones;

use crate::reconcile::DOCKER_REBUILD_PAUSE;

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
    /// A D-Bus caller's change; answered once it is in the kernel.
    Call(Call, Reply),
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

impl Waiting {
    fn new(reply: Reply, answer: String, in_kernel_is_enough: bool) -> Self {
        Waiting {
            reply,
            answer,
            in_kernel_is_enough,
        }
    }
}

pub struct Daemon {
    enforcer: Enforcer,
    config_path: PathBuf,
    config: Config,
    /// Runtime exposures; expired ones are taken out before every reconcile.
    exposures: Store,
    /// The system bus to serve the D-Bus API on; None serves none.
    bus: Option<zbus::Connection>,
    /// Callers waiting for the next reconcile.
    waiting: Vec<Waiting>,
    exposures_changed: bool,
    status: Arc<Mutex<Status>>,
    /// What the next reconcile is for, for the log; empty while there is nothing to do.
    triggers: BTreeSet<String>,
    /// When to try again after a failed reconcile, and how long the next wait will be.
    retry_at: Option<Instant>,
    retry_delay: Duration,
    /// When to bind the bridges after firewalld reloaded (Docker is rebuilding until then).
    bind_at: Option<Instant>,
    /// What the last successful reconcile applied: Docker's events that leave it unchanged
    /// need no firewalld call at all.
    applied: Option<(Plan, Vec<String>)>,
    last_reconcile: Option<Instant>,
    /// The property values last announced with PropertiesChanged (or served from the start).
    announced: Properties,
    /// ListPorts' answer when PortsChanged was last announced (or served from the start).
    announced_ports: Vec<PortRow>,
}

/// The zone the bridges are bound to while Docker runs.
fn bridge_zone(config: &Config) -> String {
    config
        .zone
        .bind
        .clone()
        .unwrap_or_else(|| zones::DOCKER_ZONE.to_owned())
}

impl Daemon {
    pub fn new(
        enforcer: Enforcer,
        config_path: PathBuf,
        config: Config,
        exposures: Store,
        bus: Option<zbus::Connection>,
    ) -> Self {
        // What the API answers before the first reconcile: the config and the saved
        // exposures are known at once (a call that starts dockgated through bus activation
        // comes in before the first reconcile ends); firewalld and Docker are not yet.
        let status = Status {
            bridge_zone: bridge_zone(&config),
            config: config.clone(),
            runtime: exposures.all().to_vec(),
            ..Status::default()
        };
        Daemon {
            enforcer,
            config_path,
            config,
            exposures,
            bus,
            waiting: Vec::new(),
            exposures_changed: false,
            announced: status.properties(),
            announced_ports: api::port_rows(&status),
            status: Arc::new(Mutex::new(status)),
            triggers: BTreeSet::from(["start".to_owned()]),
            retry_at: None,
            retry_delay: FIRST_RETRY,
            bind_at: None,
            applied: None,
            last_reconcile: None,
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
            status: self.status.clone(),
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

    /// After a reconcile: the status the API answers from, its signals, and the callers.
    async fn publish(
        &mut self,
        api: Option<&InterfaceRef<Api>>,
        outcome: Result<(&Reconciled, bool), &ReconcileError>,
        trigger: &str,
        view: &DockerView,
    ) {
        let host_zone = match outcome {
            Ok(_) => self.enforcer.firewalld.default_zone().await.ok(),
            Err(_) => None,
        };
        let (firewalld_connected, docker_connected) = match outcome {
            Ok((_, docker_ok)) => (true, docker_ok),
            Err(ReconcileError::FirewalldNotRunning) => (false, false),
            Err(_) => (true, false),
        };
        let after = {
            let mut status = self.status.lock().expect("status lock");
            status.firewalld_connected = firewalld_connected;
            status.docker_connected = docker_connected;
            status.bridge_zone = bridge_zone(&self.config);
            status.config = self.config.clone();
            status.runtime = self.exposures.all().to_vec();
            status.ports = view.ports.clone();
            if !firewalld_connected {
                status.host_zone = None;
            } else if let Some(zone) = &host_zone {
                status.host_zone = Some(zone.clone());
            }
            if let Ok((done, _)) = outcome {
                status.rule_count = done.plan.rules.len() as u32;
                status.last_reconcile = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |elapsed| elapsed.as_micros() as u64);
            }
            status.properties()
        };
        for Waiting { reply, answer, .. } in self.waiting.drain(..) {
            let _ = reply.send(match outcome {
                Ok(_) => Ok(answer),
                Err(ReconcileError::FirewalldNotRunning) => Err(ApiError::FirewallUnavailable(
                    "firewalld is not running; the change is saved and applied when it is".into(),
                )),
                Err(error) => Err(ApiError::Failed(format!(
                    "{error}; the change is saved and retried"
                ))),
            });
        }
        self.announce_ports(api).await;
        let Some(api) = api else { return };
        let emitter = api.signal_emitter();
        if let Ok((done, _)) = outcome {
            let duration_us = done.duration.as_micros() as u64;
            if let Err(error) =
                Api::reconciled(emitter, trigger, done.plan.rules.len() as u32, duration_us).await
            {
                tracing::warn!(%error, "cannot emit Reconciled");
            }
        }
        if std::mem::take(&mut self.exposures_changed)
            && let Err(error) = Api::exposures_changed(emitter).await
        {
            tracing::warn!(%error, "cannot emit ExposuresChanged");
        }
        // PropertiesChanged for the properties whose value changed since they were last
        // announced (RuleCount may already have changed when the callers were answered).
        let before = std::mem::replace(&mut self.announced, after.clone());
        let api = api.get().await;
        let mut results = Vec::new();
        if before.rule_count != after.rule_count {
            results.push(api.rule_count_changed(emitter).await);
        }
        if before.last_reconcile != after.last_reconcile {
            results.push(api.last_reconcile_changed(emitter).await);
        }
        if before.firewalld_connected != after.firewalld_connected {
            results.push(api.firewalld_connected_changed(emitter).await);
        }
        if before.docker_connected != after.docker_connected {
            results.push(api.docker_connected_changed(emitter).await);
        }
        if before.default != after.default {
            results.push(api.default_changed(emitter).await);
        }
        if before.verdict != after.verdict {
            results.push(api.verdict_changed(emitter).await);
        }
        if before.bridge_zone != after.bridge_zone {
            results.push(api.bridge_zone_changed(emitter).await);
        }
        for error in results.into_iter().filter_map(Result::err) {
            tracing::warn!(%error, "cannot emit PropertiesChanged");
        }
    }

    /// PortsChanged when ListPorts would answer differently from when it was last announced.
    async fn announce_ports(&mut self, api: Option<&InterfaceRef<Api>>) {
        let rows = api::port_rows(&self.status.lock().expect("status lock"));
        if rows == self.announced_ports {
            return;
        }
        self.announced_ports = rows;
        if let Some(api) = api
            && let Err(error) = Api::ports_changed(api.signal_emitter()).await
        {
            tracing::warn!(%error, "cannot emit PortsChanged");
        }
    }

    pub async fn run(mut self) {
        let (sender, mut inbox) = mpsc::channel(1024);
        let api = self.serve_api(sender.clone()).await;
        tokio::spawn(watch_firewalld(
            self.enforcer.firewalld.clone(),
            sender.clone(),
        ));
        tokio::spawn(watch_docker(self.enforcer.docker.watch(), sender.clone()));
        tokio::spawn(watch_signals(sender.clone()));
        while self.collect_triggers(&mut inbox).await {
            if !self.triggers.is_empty() {
                self.reconcile(api.as_ref()).await;
            }
        }
    }

    /// Waits for something to do (a message, a retry, a bind, an expiry), then coalesces what
    /// follows shortly after into `triggers`. False when the daemon is to exit.
    async fn collect_triggers(&mut self, inbox: &mut mpsc::Receiver<Message>) -> bool {
        if self.triggers.is_empty() {
            let expiry_at = self.exposures.next_expiry().map(|at| {
                Instant::now() + Duration::from_secs(at.saturating_sub(exposures::unix_now()))
            });
            let wake = [self.retry_at, self.bind_at, expiry_at]
                .into_iter()
                .flatten()
                .min();
            let received = match wake {
                Some(at) => tokio::time::timeout_at(at, inbox.recv()).await.ok(),
                None => Some(inbox.recv().await),
            };
            match received {
                Some(Some(message)) => {
                    if !self.handle(message).await {
                        return false;
                    }
                }
                Some(None) => return false,
                // A timer is due.
                None => {
                    if self.retry_at.is_some_and(|at| at <= Instant::now()) {
                        self.triggers.insert("retry".to_owned());
                        self.retry_at = None;
                    }
                    if self.bind_at.is_some_and(|at| at <= Instant::now()) {
                        self.triggers
                            .insert("bind after Docker's rebuild".to_owned());
                        self.bind_at = None;
                    }
                    if expiry_at.is_some_and(|at| at <= Instant::now()) {
                        self.triggers.insert("exposure expired".to_owned());
                    }
                    if self.triggers.is_empty() {
                        return true;
                    }
                }
            }
        }
        // Coalesce: take everything that arrives shortly after the first event, and while
        // only Docker is talking, until a burst gap has passed since the last reconcile.
        let first = Instant::now();
        loop {
            let mut deadline = first + COALESCE;
            if !self.waiting.is_empty() {
                // A caller waits: take what is queued already, no more.
                deadline = first;
            } else if let Some(last) = self.last_reconcile
                && only_docker_events(&self.triggers)
            {
                deadline = deadline.max(last + DOCKER_BURST_GAP);
            }
            match tokio::time::timeout_at(deadline, inbox.recv()).await {
                Ok(Some(message)) => {
                    if !self.handle(message).await {
                        return false;
                    }
                }
                Ok(None) => return false,
                Err(_) => return true,
            }
        }
    }

    /// firewalld before 2.0 does not delete its own nftables table when it starts: with
    /// CleanupOnExit=no (which dockgate sets) every restart adds all of firewalld's rules once
    /// more (firewalld#1192; seen in the sandbox: +90 lines per restart on 1.3.3, and the
    /// restarts themselves grow slower). A reload clears them, but reloading on our own right
    /// when firewalld comes back, while Docker rebuilds, risks Docker 28's reload deadlock
    /// (moby/moby#50619), so the admin is told instead.
    async fn warn_if_firewalld_keeps_copies(&self) {
        let firewalld = &self.enforcer.firewalld;
        let (Ok(major), Ok(cleanup)) = (
            firewalld.major_version().await,
            firewalld.cleanup_on_exit().await,
        ) else {
            return;
        };
        if major < 2 && matches!(cleanup.to_ascii_lowercase().as_str(), "no" | "false") {
            tracing::warn!(
                "firewalld before 2.0 keeps its old nftables rules when it starts with CleanupOnExit=no and adds them again; `firewall-cmd --reload` at a quiet moment removes the copies (firewalld#1192)"
            );
        }
    }

    /// One reconcile for the triggers collected, then the status, signals and callers.
    async fn reconcile(&mut self, api: Option<&InterfaceRef<Api>>) {
        let trigger = self.triggers.iter().cloned().collect::<Vec<_>>().join(",");
        let firewalld_started = self.triggers.contains("firewalld started");
        let firewalld_restarted = firewalld_started || self.triggers.contains("firewalld reloaded");
        if firewalld_started {
            self.warn_if_firewalld_keeps_copies().await;
        }
        let trigger_set = std::mem::take(&mut self.triggers);
        let bind_now = match (&self.config.zone.bind, firewalld_restarted) {
            (Some(_), true) => {
                self.bind_at = Some(Instant::now() + DOCKER_REBUILD_PAUSE);
                false
            }
            _ => self.bind_at.is_none(),
        };

        tracing::debug!(trigger, "reconciling");
        match self.exposures.expire(exposures::unix_now()) {
            Ok(expired) => {
                self.exposures_changed |= !expired.is_empty();
                for exposure in expired {
                    tracing::info!(id = exposure.id, port = %exposure.port, owner_uid = exposure.owner_uid, "exposure expired");
                }
            }
            Err(error) => tracing::error!(%error, "cannot take out expired exposures"),
        }
        let mut docker_ok = true;
        let view = match self.enforcer.docker_view().await {
            Ok(view) => view,
            Err(error) => {
                docker_ok = false;
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
        if only_docker_events(&trigger_set) && self.retry_at.is_none() && self.bind_at.is_none() {
            let wanted = (
                plan_for(&self.config, self.exposures.all(), &view),
                view.bridges.clone(),
            );
            if self.applied.as_ref() == Some(&wanted) {
                tracing::debug!(trigger, "Docker changed nothing dockgate enforces");
                self.status.lock().expect("status lock").ports = view.ports;
                self.announce_ports(api).await;
                return;
            }
        }
        let (waiting, status, exposures) = (&mut self.waiting, &self.status, &self.exposures);
        let answer_early = |plan: &Plan| {
            {
                // What a caller reads right after its answer: the rules now in the kernel.
                let mut status = status.lock().expect("status lock");
                status.runtime = exposures.all().to_vec();
                status.rule_count = plan.rules.len() as u32;
            }
            let (now, later) = std::mem::take(waiting)
                .into_iter()
                .partition(|caller| caller.in_kernel_is_enough);
            *waiting = later;
            for Waiting { reply, answer, .. } in now {
                // A dropped reply is a caller that went away: nothing to tell.
                let _ = reply.send(Ok(answer));
            }
        };
        let result = self
            .enforcer
            .reconcile_with(&self.config, exposures.all(), &view, bind_now, answer_early)
            .await;
        match &result {
            Ok(done) => {
                self.retry_delay = FIRST_RETRY;
                self.retry_at = None;
                self.last_reconcile = Some(Instant::now());
                self.applied = Some((done.plan.clone(), view.bridges.clone()));
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
                self.applied = None;
                tracing::warn!(trigger, %error, retry_in_ms = self.retry_delay.as_millis() as u64, "reconcile failed");
                self.retry_at = Some(Instant::now() + self.retry_delay);
                self.retry_delay = (self.retry_delay * 2).min(MAX_RETRY);
            }
        }
        let outcome = result.as_ref().map(|done| (done, docker_ok));
        self.publish(api, outcome, &trigger, &view).await;
    }

    /// Handles one message; false when the daemon is to exit.
    async fn handle(&mut self, message: Message) -> bool {
        match message {
            Message::DockerBack => {
                self.triggers.insert("docker connected".to_owned());
                // Docker is up with its bridges in zone docker: bind them at once rather than
                // after the coalescing window, unless firewalld is still being rebuilt by
                // Docker (then the pause after the reload applies).
                if let Some(bind) = &self.config.zone.bind
                    && self.bind_at.is_none()
                {
                    self.bind_bridges_now(bind).await;
                }
            }
            Message::Changed(what) => {
                self.triggers.insert(what);
            }
            Message::DockerGone => {
                self.triggers.insert("docker stopped".to_owned());
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
                    self.exposures_changed = true;
                    self.triggers.insert("config reloaded".to_owned());
                }
                Err(error) => {
                    tracing::error!(%error, "new config refused; keeping the last good policy")
                }
            },
            Message::Call(call, reply) => self.handle_call(call, reply),
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
    /// A caller's change: saved at once, answered after the reconcile that applies it.
    fn handle_call(&mut self, call: Call, reply: Reply) {
        match call {
            Call::Expose {
                exposure,
                ttl_seconds,
                uid,
            } => match self
                .exposures
                .add(exposure, ttl_seconds, uid, exposures::unix_now())
            {
                Ok(id) => {
                    self.triggers.insert(format!("Expose {id} by uid {uid}"));
                    self.exposures_changed = true;
                    self.waiting.push(Waiting::new(reply, id, true));
                }
                Err(error) => {
                    let _ = reply.send(Err(ApiError::Failed(error.to_string())));
                }
            },
            Call::Unexpose { id, uid } => {
                let in_config = id
                    .strip_prefix("config-")
                    .and_then(|n| n.parse::<usize>().ok())
                    .is_some_and(|n| (1..=self.config.expose.len()).contains(&n));
                if in_config {
                    let _ = reply.send(Err(ApiError::ReadOnly(format!(
                        "{id} comes from {}; change it there",
                        self.config_path.display()
                    ))));
                    return;
                }
                match self.exposures.remove(&id) {
                    Ok(_) => {
                        self.triggers.insert(format!("Unexpose {id} by uid {uid}"));
                        self.exposures_changed = true;
                        self.waiting.push(Waiting::new(reply, String::new(), true));
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
                self.triggers.insert(format!("Reconcile by uid {uid}"));
                self.waiting.push(Waiting::new(reply, String::new(), false));
            }
            Call::ReloadConfig { uid } => match Config::load(&self.config_path) {
                Ok(config) => {
                    tracing::info!(path = %self.config_path.display(), uid, "config reloaded");
                    self.config = config;
                    self.exposures_changed = true;
                    self.triggers.insert(format!("ReloadConfig by uid {uid}"));
                    self.waiting.push(Waiting::new(reply, String::new(), false));
                }
                Err(error) => {
                    tracing::error!(%error, uid, "new config refused; keeping the last good policy");
                    let _ = reply.send(Err(ApiError::Failed(format!(
                        "{error}; the last good config stays in force"
                    ))));
                }
            },
        }
    }

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
