//! The long-running dockgated: a pure [`core::Core`] decides, and this shell performs what it
//! decides (firewalld, Docker, the state dir, the bus) and feeds the answers back. Watchers of
//! firewalld, Docker and signals, and the D-Bus handlers, only send messages to the one task
//! that runs the shell; nothing transient ends the daemon.
//!
//! Readiness: the bus name is taken after the first reconcile attempt, so whoever sees it
//! (systemd for `Type=dbus`, a script, a GUI) finds the policy in force, or firewalld found
//! down and `FirewalldConnected` saying so.

pub mod core;
pub mod status;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};
use zbus::object_server::InterfaceRef;

use crate::api::{self, Api};
use crate::apply::{Applier, ApplyError};
use crate::config::Config;
use crate::diff;
use crate::docker::{Docker, DockerApi, DockerEvent};
use crate::exposures::Stored;
use crate::firewalld::{Firewall, Firewalld, FirewalldError, Presence, ZoneEvent};
use crate::plan::DockerView;
use crate::refused;
use crate::scheduler::Trigger;

pub use self::core::{Answer, Call, Error};
use self::core::{CallerId, Clock, Core, Effect, Event, Failure, Signal};
use self::status::{Property, Status};

/// What the daemon's task receives.
#[derive(Debug)]
pub enum Message {
    Event(Event),
    /// A D-Bus caller's call; the answer goes back on the channel.
    Call(Call, Reply),
}

pub type Reply = oneshot::Sender<Result<Answer, Error>>;

/// Docker's view as last read, for a start while Docker does not answer.
pub const VIEW_FILE: &str = "docker-view.json";

fn clock() -> Clock {
    Clock {
        now: Instant::now(),
        unix_micros: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_micros() as u64),
    }
}

fn failure(error: ApplyError) -> Failure {
    Failure {
        firewalld_down: matches!(
            error,
            ApplyError::FirewalldNotRunning | ApplyError::Firewalld(FirewalldError::NotRunning)
        ),
        message: error.to_string(),
    }
}

pub struct Daemon<F, D> {
    core: Core,
    applier: Applier<F>,
    docker: D,
    config_path: PathBuf,
    /// The callers waiting for an answer.
    replies: HashMap<CallerId, Reply>,
    next_caller: CallerId,
    /// What the API answers from.
    status: Arc<Mutex<Status>>,
    /// The system bus to serve the API on (None serves none), and the API once served.
    bus: Option<zbus::Connection>,
    api: Option<InterfaceRef<Api>>,
    /// For the API's calls to reach this task.
    sender: Option<mpsc::Sender<Message>>,
    /// The task reading the NFLOG group of the recording rules.
    listener: Option<tokio::task::JoinHandle<()>>,
    exit: bool,
}

impl<F: Firewall, D: DockerApi> Daemon<F, D> {
    pub fn new(
        applier: Applier<F>,
        docker: D,
        config_path: PathBuf,
        config: Config,
        stored: Stored,
        bus: Option<zbus::Connection>,
    ) -> Self {
        // Unreadable is as good as none: Docker's answer replaces it at the first reconcile.
        let view = match applier.state.load(VIEW_FILE) {
            Ok(view) => view.unwrap_or_default(),
            Err(error) => {
                tracing::warn!(%error, "Docker's last view cannot be read; starting without it");
                DockerView::default()
            }
        };
        let refused = match applier.state.load(refused::FILE) {
            Ok(saved) => saved.unwrap_or_default(),
            Err(error) => {
                tracing::warn!(%error, "the refused-connections table cannot be read; starting an empty one");
                refused::Saved::default()
            }
        };
        let core = Core::new(config_path.clone(), config, stored, view, refused, &clock());
        Daemon {
            core,
            applier,
            docker,
            config_path,
            replies: HashMap::new(),
            next_caller: 0,
            status: Arc::default(),
            bus,
            api: None,
            sender: None,
            listener: None,
            exit: false,
        }
    }

    /// Takes in one message and performs everything it leads to.
    async fn receive(&mut self, message: Message) {
        let event = match message {
            Message::Event(event) => event,
            Message::Call(call, reply) => {
                self.next_caller += 1;
                self.replies.insert(self.next_caller, reply);
                Event::Call(self.next_caller, call)
            }
        };
        let effects = self.core.handle(event, &clock());
        self.perform_all(effects).await;
    }

    /// Starts what is due (a reconcile, a retried write) and sees it through, until nothing is.
    async fn settle(&mut self) {
        loop {
            let effects = self.core.poll(&clock());
            if effects.is_empty() {
                return;
            }
            self.perform_all(effects).await;
        }
    }

    /// Performs effects in order; what they answer goes back to the core before anything else.
    async fn perform_all(&mut self, effects: Vec<Effect>) {
        let mut queue: VecDeque<Effect> = effects.into();
        while let Some(effect) = queue.pop_front() {
            if let Some(event) = self.perform(effect).await {
                let mut next: VecDeque<Effect> = self.core.handle(event, &clock()).into();
                next.append(&mut queue);
                queue = next;
            }
        }
    }

    async fn perform(&mut self, effect: Effect) -> Option<Event> {
        match effect {
            Effect::Reply(caller, answer) => {
                // A dropped reply is a caller that went away: nothing to tell.
                if let Some(reply) = self.replies.remove(&caller) {
                    let _ = reply.send(answer);
                }
                None
            }
            Effect::LoadConfig { by } => Some(Event::ConfigLoaded {
                by,
                result: Config::load(&self.config_path).map_err(|error| error.to_string()),
            }),
            Effect::SaveExposures(next) => Some(Event::ExposuresSaved(
                next.save(&self.applier.state)
                    .map_err(|error| error.to_string()),
            )),
            Effect::SaveDockerView(view) => {
                if let Err(error) = self.applier.state.store(VIEW_FILE, &view) {
                    tracing::warn!(%error, "cannot keep Docker's view in the state dir");
                }
                None
            }
            Effect::ListenRefused(group) => {
                self.listen_refused(group);
                None
            }
            Effect::SaveRefused(saved) => {
                if let Err(error) = self.applier.state.store(refused::FILE, &saved) {
                    tracing::warn!(%error, "cannot keep the refused-connections table in the state dir");
                }
                None
            }
            Effect::JournalRefused(hit) => {
                crate::logging::refused(&hit);
                None
            }
            Effect::CheckFirewalldCopies => {
                self.warn_if_firewalld_keeps_copies().await;
                None
            }
            Effect::ReadDocker => Some(Event::DockerRead(
                self.docker.view().await.map_err(|error| error.to_string()),
            )),
            Effect::ApplyRuntime(desired) => Some(Event::InKernel(
                self.applier.runtime_phase(&desired).await.map_err(failure),
            )),
            Effect::ApplyRest {
                desired,
                mut outcome,
            } => {
                let result = async {
                    self.applier.permanent_phase(&desired, &mut outcome).await?;
                    let moved = self.applier.bridges_phase(&desired, &mut outcome).await?;
                    Ok((outcome, moved))
                }
                .await;
                Some(Event::Applied(result.map_err(failure)))
            }
            Effect::LookAtRebuild => Some(Event::RebuildSeen(
                crate::rebuild::observe(&self.applier.firewall, &self.docker).await,
            )),
            Effect::ReadHostZones => Some(Event::HostZones(
                self.applier.firewall.host_zones().await.ok(),
            )),
            Effect::Publish(status) => {
                *self.status.lock().expect("status lock") = status;
                None
            }
            Effect::Signal(signal) => {
                self.emit(signal).await;
                None
            }
            Effect::Serve => {
                self.serve().await;
                None
            }
            Effect::Exit => {
                self.exit = true;
                None
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

    /// Reads `group` from now on, in a task of its own that sends what it reads to this one.
    fn listen_refused(&mut self, group: u16) {
        let Some(sender) = self.sender.clone() else {
            return;
        };
        if let Some(old) = self.listener.take() {
            old.abort();
        }
        self.listener = Some(tokio::spawn(async move {
            let mut listener = match crate::nflog::Listener::bind(group).await {
                Ok(listener) => listener,
                Err(error) => {
                    tracing::error!(%error, "refused connections are refused all the same, but not recorded");
                    return;
                }
            };
            tracing::info!(group, "recording refused connections from NFLOG");
            loop {
                match listener.next().await {
                    Ok(hits) if hits.is_empty() => {}
                    Ok(hits) => {
                        if sender
                            .send(Message::Event(Event::Refused(hits)))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    Err(error) => {
                        tracing::error!(%error, "cannot read refused connections any more");
                        return;
                    }
                }
            }
        }));
    }

    /// Puts the API on the bus; when that fails (logged), the policy is kept all the same.
    async fn serve(&mut self) {
        let (Some(connection), Some(sender)) = (self.bus.as_ref(), self.sender.clone()) else {
            return;
        };
        let api = Api {
            calls: sender,
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
                self.api = Some(interface);
            }
            Err(error) => {
                tracing::error!(%error, name = api::BUS_NAME, "cannot serve the D-Bus API");
            }
        }
    }

    async fn emit(&self, signal: Signal) {
        let Some(api) = self.api.as_ref() else {
            return;
        };
        let emitter = api.signal_emitter();
        let result = match signal {
            Signal::ExposuresChanged => Api::exposures_changed(emitter).await,
            Signal::PortsChanged => Api::ports_changed(emitter).await,
            Signal::RefusedChanged => Api::refused_changed(emitter).await,
            Signal::Reconciled {
                trigger,
                rules,
                duration_us,
            } => Api::reconciled(emitter, &trigger, rules, duration_us).await,
            Signal::PropertyChanged(property) => {
                let interface = api.get().await;
                match property {
                    Property::FirewalldConnected => {
                        interface.firewalld_connected_changed(emitter).await
                    }
                    Property::DockerConnected => interface.docker_connected_changed(emitter).await,
                    Property::Default => interface.default_changed(emitter).await,
                    Property::Verdict => interface.verdict_changed(emitter).await,
                    Property::OnRevoke => interface.on_revoke_changed(emitter).await,
                    Property::StrictForwardPorts => {
                        interface.strict_forward_ports_changed(emitter).await
                    }
                    Property::BridgeZone => interface.bridge_zone_changed(emitter).await,
                    Property::RuleCount => interface.rule_count_changed(emitter).await,
                    Property::LastReconcile => interface.last_reconcile_changed(emitter).await,
                }
            }
        };
        if let Err(error) = result {
            tracing::warn!(%error, "cannot emit a signal");
        }
    }
}

impl Daemon<Firewalld, Docker> {
    pub async fn run(mut self) {
        let (sender, mut inbox) = mpsc::channel(1024);
        tokio::spawn(watch_firewalld(
            self.applier.firewall.clone(),
            sender.clone(),
        ));
        tokio::spawn(watch_docker(self.docker.watch(), sender.clone()));
        tokio::spawn(watch_signals(sender.clone()));
        self.sender = Some(sender);
        // The first reconcile before the name is taken (the core serves once it is done):
        // whoever sees the name finds the policy in force, or firewalld down and
        // FirewalldConnected saying so.
        self.settle().await;
        while !self.exit {
            let wake = self.core.next_wake(&clock());
            let message = match wake {
                Some(at) => tokio::select! {
                    message = inbox.recv() => Some(message),
                    () = tokio::time::sleep_until(tokio::time::Instant::from_std(at)) => None,
                },
                None => Some(inbox.recv().await),
            };
            match message {
                Some(Some(message)) => self.receive(message).await,
                Some(None) => return,
                // A timer is due.
                None => {}
            }
            // What is queued already goes into the same reconcile.
            while !self.exit
                && let Ok(message) = inbox.try_recv()
            {
                self.receive(message).await;
            }
            if !self.exit {
                self.settle().await;
            }
        }
    }
}

fn trigger_message(trigger: Trigger) -> Message {
    Message::Event(Event::Trigger(trigger))
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
                && sender.send(trigger_message(trigger)).await.is_err()
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
        if sender.send(trigger_message(trigger)).await.is_err() {
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
            _ = hangup.recv() => Message::Event(Event::ReloadConfig),
            _ = terminate.recv() => Message::Event(Event::Shutdown),
            _ = interrupt.recv() => Message::Event(Event::Shutdown),
        };
        if sender.send(message).await.is_err() {
            return;
        }
    }
}
