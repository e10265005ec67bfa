//! The daemon's decisions, pure: an [`Event`] and the [`Clock`] in, the [`Effect`]s to perform
//! out. The core owns the config, the runtime exposures, the scheduler and the callers waiting
//! for an answer; it never waits and does no I/O, so sequences such as "Docker gone
//! mid-reconcile", "a full disk at expiry", "two callers racing" or "firewalld stopping during
//! a call" are unit tests. The shell (the parent module) performs the effects with the real
//! firewalld, Docker, state dir and bus, and feeds what they answered back as events, each
//! before it reads anything else.
//!
//! A reconcile is a sequence of effects and the events answering them: read Docker's view ->
//! plan (here) -> the kernel's rules (callers who only wait for those are answered) -> the
//! permanent layer and the bridges -> firewalld's zones when they may have changed -> the
//! status, its signals and the remaining callers.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::apply::Outcome;
use crate::config::{Config, Exposure};
use crate::exposures::{Listed, Origin, Stored};
use crate::plan::{self, Desired, DockerView, Inputs, Plan};
use crate::policy::HostZones;
use crate::rebuild::{self, Observed};
use crate::refused::{self, Hit, Table};
use crate::scheduler::{Batch, FIRST_RETRY, MAX_RETRY, RebuildEnd, Scheduler, Trigger};
use crate::zones::{self, Binding};

use super::status::{Announced, Property, Status};

/// The time as the core sees it: the scheduler's monotonic clock and the wall clock that
/// exposures expire by.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub now: Instant,
    pub unix_micros: u64,
}

impl Clock {
    pub fn unix(&self) -> u64 {
        self.unix_micros / 1_000_000
    }

    /// The monotonic instant of a wall-clock second (never before now).
    fn at_unix(&self, unix: u64) -> Instant {
        let micros = (unix * 1_000_000).saturating_sub(self.unix_micros);
        self.now + Duration::from_micros(micros)
    }
}

/// Names one caller's pending answer; the shell keeps the reply channel behind it.
pub type CallerId = u64;

/// What a caller asked for, once the API has checked the arguments and polkit allowed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Expose {
        exposure: Exposure,
        ttl_seconds: u64,
        uid: u32,
    },
    /// Whether `uid` may make one more runtime exposure, asked before polkit: a caller at its
    /// own bound is refused without polkit's work (a flood of calls costs little), and learns
    /// only about its own exposures. Expose checks every bound again.
    Admit {
        uid: u32,
    },
    /// What the store holds under an id, before polkit is asked about removing it: the
    /// owner and the details polkit sees are the store's, never a copy's.
    Describe {
        id: String,
    },
    /// `admin`: polkit allowed the caller `admin` (needed for another uid's exposure).
    Unexpose {
        id: String,
        uid: u32,
        admin: bool,
    },
    Reconcile {
        uid: u32,
    },
    ReloadConfig {
        uid: u32,
    },
    /// The refused connections seen since a unix second.
    ListRefused {
        since: u64,
    },
}

/// A successful answer to a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Done,
    /// The new exposure's id.
    Id(String),
    /// An exposure as the store has it (Describe).
    Exposure(Listed),
    Refused(Vec<refused::Entry>),
}

/// The one error type that leaves the core; the API maps it to D-Bus errors once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    ReadOnly(String),
    #[error("{0}")]
    NotAuthorized(String),
    #[error("{0}")]
    LimitExceeded(String),
    #[error("{0}")]
    FirewallUnavailable(String),
    #[error("{0}")]
    Failed(String),
}

/// Why an apply failed, as far as the core needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub firewalld_down: bool,
    pub message: String,
}

#[derive(Debug, Clone)]
pub enum Event {
    Trigger(Trigger),
    /// SIGHUP: read the config again.
    ReloadConfig,
    /// The config file as read for a [`Effect::LoadConfig`].
    ConfigLoaded {
        by: Option<(CallerId, u32)>,
        result: Result<Config, String>,
    },
    Call(CallerId, Call),
    /// The [`Effect::SaveExposures`] write is done (or failed, with why).
    ExposuresSaved(Result<(), String>),
    DockerRead(Result<DockerView, String>),
    /// The kernel holds the planned rules (the runtime phase), or why not.
    InKernel(Result<Outcome, Failure>),
    /// The permanent layer and the bridges, with the bridges moved.
    Applied(Result<(Outcome, Vec<String>), Failure>),
    /// firewalld's zones as read for [`Effect::ReadHostZones`]; None when they could not be.
    HostZones(Option<HostZones>),
    /// What a look at Docker's rebuild saw ([`Effect::LookAtRebuild`]).
    RebuildSeen(Observed),
    /// Connections the recording rules logged.
    Refused(Vec<Hit>),
    /// SIGTERM or SIGINT.
    Shutdown,
}

#[derive(Debug, Clone)]
pub enum Effect {
    Reply(CallerId, Result<Answer, Error>),
    /// Read the config file; answer with [`Event::ConfigLoaded`].
    LoadConfig {
        by: Option<(CallerId, u32)>,
    },
    /// Write the runtime exposures; answer with [`Event::ExposuresSaved`].
    SaveExposures(Stored),
    /// Keep Docker's view for when Docker does not answer (also after a restart); a failed
    /// write is only logged: the view in memory serves until the next one.
    SaveDockerView(DockerView),
    /// Warn when firewalld keeps copies of its rules across restarts (see the shell).
    CheckFirewalldCopies,
    /// Read this NFLOG group from now on (the recording rules log to it).
    ListenRefused(u16),
    /// Keep the refused-connections table in the state dir; a failed write is only logged.
    SaveRefused(refused::Saved),
    /// One journal line for a source refused at a port for the first time, with the port and
    /// the source as fields of their own.
    JournalRefused(Hit),
    ReadDocker,
    ApplyRuntime(Desired),
    ApplyRest {
        desired: Desired,
        outcome: Outcome,
    },
    ReadHostZones,
    /// Look whether Docker's rebuild after a firewalld reload is over (see `crate::rebuild`).
    LookAtRebuild,
    /// What the API answers from now on.
    Publish(Status),
    Signal(Signal),
    /// Take the bus name and serve the API: the first reconcile is done.
    Serve,
    Exit,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    ExposuresChanged,
    PortsChanged,
    /// The refused-connections table changed (at most once a second).
    RefusedChanged,
    PropertyChanged(Property),
    Reconciled {
        trigger: String,
        rules: u32,
        duration_us: u64,
    },
}

/// A caller waiting for the reconcile that carries out its call.
#[derive(Debug, Clone)]
struct Waiting {
    caller: CallerId,
    answer: Answer,
    /// Answered as soon as the kernel holds the new rules (Expose, Unexpose): the permanent
    /// layer, zone docker and the bridges are the same whatever the caller asked for.
    in_kernel_is_enough: bool,
}

/// A write of the state file under way, and what it is for.
#[derive(Debug, Clone)]
struct Save {
    next: Stored,
    purpose: Purpose,
}

#[derive(Debug, Clone)]
enum Purpose {
    Expose {
        caller: CallerId,
        id: String,
        uid: u32,
    },
    Unexpose {
        caller: CallerId,
        id: String,
        uid: u32,
    },
    /// Expired exposures out of the file; they are out of the plan already.
    Cleanup,
}

/// Where a reconcile is.
#[derive(Debug, Clone)]
enum Stage {
    ReadingDocker,
    Applying(Planned),
    ReadingZones(Planned, Outcome),
}

/// What a reconcile planned, and from what.
#[derive(Debug, Clone)]
struct Planned {
    desired: Desired,
    view: DockerView,
    docker_answered: bool,
    listed: Vec<Listed>,
}

#[derive(Debug, Clone)]
struct Reconciling {
    batch: Batch,
    started: Instant,
    /// The wall-clock second it started: a reload it makes is later.
    started_unix: u64,
    /// The callers whose calls this reconcile carries out.
    callers: Vec<Waiting>,
    stage: Stage,
}

/// Retries of a write that failed, with backoff.
#[derive(Debug, Clone)]
struct Backoff {
    at: Option<Instant>,
    delay: Duration,
}

impl Backoff {
    fn new() -> Self {
        Backoff {
            at: None,
            delay: FIRST_RETRY,
        }
    }

    fn failed(&mut self, now: Instant) -> Duration {
        let wait = self.delay;
        self.at = Some(now + wait);
        self.delay = (wait * 2).min(MAX_RETRY);
        wait
    }

    fn succeeded(&mut self) {
        *self = Backoff::new();
    }

    fn due(&self, now: Instant) -> bool {
        self.at.is_none_or(|at| at <= now)
    }
}

pub struct Core {
    config_path: PathBuf,
    config: Config,
    stored: Stored,
    saving: Option<Save>,
    cleanup: Backoff,
    scheduler: Scheduler,
    /// Callers waiting for the next reconcile.
    waiting: Vec<Waiting>,
    reconciling: Option<Reconciling>,
    /// Whether Docker's event stream says dockerd runs (None: not heard yet). While it is
    /// stopping its API may still answer, but its bridges must go back to zone docker.
    docker_running: Option<bool>,
    /// Docker's view as last read: what is judged when Docker does not answer, so that a
    /// missing answer never shrinks what is judged (custom bridge names, container-bound
    /// exposures).
    view: DockerView,
    /// What the last successful reconcile applied: Docker's events that leave it unchanged
    /// need no firewalld call at all.
    applied: Option<(Plan, Vec<String>)>,
    /// The wall-clock second the exposures of the current plan were chosen at.
    planned_at: u64,
    /// Docker's rebuild under way: the second it began (and the instant, for the log), and the
    /// rules the last look saw.
    rebuild_since: u64,
    rebuild_started: Instant,
    rebuild_seen: Option<String>,
    status: Status,
    announced: Announced,
    serving: bool,
    refused: Recording,
}

/// How often the refused-connections table is written while it changes, and its signal sent.
pub const REFUSED_SAVE_EVERY: Duration = Duration::from_secs(30);
pub const REFUSED_SIGNAL_EVERY: Duration = Duration::from_secs(1);
/// Journal lines for sources refused for the first time, per minute; past it one line says
/// the rest are in `dockgatectl refused`.
pub const REFUSED_JOURNAL_PER_MINUTE: u32 = 30;

/// The refused-connections table, and when it was last written, signalled and journalled.
struct Recording {
    table: Table,
    /// The NFLOG group being read.
    listening: Option<u16>,
    /// Changed since the last write.
    unsaved: bool,
    saved_at: Instant,
    /// Changed since the last signal.
    unsignalled: bool,
    signalled_at: Option<Instant>,
    /// The minute (unix / 60) and the journal lines written in it.
    journal_minute: u64,
    journal_lines: u32,
}

/// The zone the bridges are bound to while Docker runs.
fn bridge_zone(config: &Config) -> String {
    config
        .zone
        .bind
        .clone()
        .unwrap_or_else(|| zones::DOCKER_ZONE.to_owned())
}

impl Core {
    /// `view`: Docker's view as last saved (empty when there is none); `refused`: the
    /// refused-connections table as saved.
    pub fn new(
        config_path: PathBuf,
        config: Config,
        stored: Stored,
        view: DockerView,
        refused: refused::Saved,
        clock: &Clock,
    ) -> Self {
        let (in_force, _) = stored.expire(clock.unix());
        // The config and the saved exposures are known at once; firewalld and Docker once
        // the first reconcile has looked.
        let status = Status {
            bridge_zone: bridge_zone(&config),
            exposures: crate::exposures::listed(&config, in_force.all()),
            config: config.clone(),
            ..Status::default()
        };
        let mut scheduler = Scheduler::new(clock.now);
        scheduler.reconcile_after_rebuild(plan::waits_for_docker_rebuild(&config));
        let refused = Recording {
            table: Table::restore(refused, config.refused.max_entries),
            listening: None,
            unsaved: false,
            saved_at: clock.now,
            unsignalled: false,
            signalled_at: None,
            journal_minute: 0,
            journal_lines: 0,
        };
        Core {
            config_path,
            config,
            stored,
            saving: None,
            cleanup: Backoff::new(),
            scheduler,
            waiting: Vec::new(),
            reconciling: None,
            docker_running: None,
            view,
            applied: None,
            planned_at: clock.unix(),
            rebuild_since: clock.unix(),
            rebuild_started: clock.now,
            rebuild_seen: None,
            announced: Announced::of(&status),
            status,
            serving: false,
            refused,
        }
    }

    /// The runtime exposures as they are on disk.
    pub fn stored(&self) -> &Stored {
        &self.stored
    }

    /// When the core must look again even if no event comes.
    pub fn next_wake(&self, clock: &Clock) -> Option<Instant> {
        let expiry = self
            .stored
            .next_expiry(self.planned_at)
            .map(|at| clock.at_unix(at));
        let cleanup = self
            .has_expired(clock)
            .then_some(self.cleanup.at.unwrap_or(clock.now));
        let refused = &self.refused;
        let signal = refused
            .unsignalled
            .then(|| refused.signalled_at.map(|at| at + REFUSED_SIGNAL_EVERY))
            .map(|at| at.unwrap_or(clock.now));
        let save = refused
            .unsaved
            .then_some(refused.saved_at + REFUSED_SAVE_EVERY);
        [self.scheduler.next_wake(expiry), cleanup, signal, save]
            .into_iter()
            .flatten()
            .min()
    }

    fn has_expired(&self, clock: &Clock) -> bool {
        !self.stored.expire(clock.unix()).1.is_empty()
    }

    /// An exposure of the current plan has expired since it was planned.
    fn expiry_due(&self, clock: &Clock) -> bool {
        self.stored
            .next_expiry(self.planned_at)
            .is_some_and(|at| at <= clock.unix())
    }

    /// Takes in one event. Reconciles start only in [`Core::poll`], so that events that came
    /// together go into one reconcile.
    pub fn handle(&mut self, event: Event, clock: &Clock) -> Vec<Effect> {
        let mut effects = Vec::new();
        match event {
            Event::Trigger(trigger) => {
                match trigger {
                    Trigger::DockerConnected => self.docker_running = Some(true),
                    Trigger::DockerStopped => self.docker_running = Some(false),
                    _ => {}
                }
                if trigger.starts_docker_rebuild() {
                    self.rebuild_started(clock.unix(), clock);
                }
                self.scheduler.add(trigger, clock.now);
            }
            Event::ReloadConfig => effects.push(Effect::LoadConfig { by: None }),
            Event::ConfigLoaded { by, result } => {
                self.config_loaded(by, result, clock, &mut effects)
            }
            Event::Call(caller, call) => self.call(caller, call, clock, &mut effects),
            Event::ExposuresSaved(result) => self.saved(result, clock, &mut effects),
            Event::DockerRead(result) => self.docker_read(result, clock, &mut effects),
            Event::InKernel(result) => self.in_kernel(result, clock, &mut effects),
            Event::Applied(result) => self.applied(result, clock, &mut effects),
            Event::HostZones(zones) => {
                if let Some(Reconciling {
                    stage: Stage::ReadingZones(planned, outcome),
                    ..
                }) = self.reconciling.as_mut()
                {
                    let (planned, outcome) = (planned.clone(), outcome.clone());
                    self.succeed(planned, outcome, zones, clock, &mut effects);
                }
            }
            Event::RebuildSeen(observed) => {
                let over = rebuild::over(
                    &observed,
                    self.rebuild_since,
                    self.rebuild_seen.as_deref(),
                    &self.view.ports,
                );
                tracing::debug!(
                    reloaded_at = observed.reloaded_at,
                    rules_read = observed.rules.is_some(),
                    over,
                    "looked at Docker's rebuild"
                );
                self.rebuild_seen = observed.rules;
                let ended = self.scheduler.looked(over, clock.now);
                self.rebuild_ended(ended, clock);
            }
            Event::Refused(hits) => self.refused(hits, clock, &mut effects),
            Event::Shutdown => {
                tracing::info!("exiting; the rules stay in place");
                if self.refused.unsaved {
                    effects.push(Effect::SaveRefused(self.refused.table.saved()));
                }
                effects.push(Effect::Exit);
            }
        }
        effects
    }

    /// Starts what is due: a reconcile, or the removal of expired exposures from the state
    /// file. One at a time: nothing starts while a reconcile or a write is under way.
    pub fn poll(&mut self, clock: &Clock) -> Vec<Effect> {
        let mut effects = self.refused_due(clock);
        if self.reconciling.is_some() || self.saving.is_some() {
            return effects;
        }
        let expiry = self.expiry_due(clock).then_some(clock.now);
        if let Some(batch) = self.scheduler.take_due(clock.now, expiry) {
            if batch.contains(&Trigger::FirewalldStarted) {
                effects.push(Effect::CheckFirewalldCopies);
            }
            tracing::debug!(trigger = batch.to_string(), "reconciling");
            self.reconciling = Some(Reconciling {
                batch,
                started: clock.now,
                started_unix: clock.unix(),
                callers: std::mem::take(&mut self.waiting),
                stage: Stage::ReadingDocker,
            });
            effects.push(Effect::ReadDocker);
            return effects;
        }
        if self.scheduler.take_look(clock.now) {
            if self.docker_running == Some(false) {
                // A Docker that is not running rebuilds nothing; it builds its rules when it
                // starts, and that start (DockerConnected) is a reconcile of its own.
                let ended = self.scheduler.looked(true, clock.now);
                self.rebuild_ended(ended, clock);
                return self.poll(clock);
            }
            effects.push(Effect::LookAtRebuild);
            return effects;
        }
        if self.has_expired(clock) && self.cleanup.due(clock.now) {
            let (next, expired) = self.stored.expire(clock.unix());
            for exposure in &expired {
                tracing::info!(id = exposure.id, port = %exposure.port, owner_uid = exposure.owner_uid, "exposure expired");
            }
            self.save(next, Purpose::Cleanup, &mut effects);
        }
        effects
    }

    /// Counts what the recording rules logged; one journal line for each source first seen at
    /// a port (a bounded number a minute).
    fn refused(&mut self, hits: Vec<Hit>, clock: &Clock, effects: &mut Vec<Effect>) {
        let recording = &mut self.refused;
        for hit in hits {
            let recorded = recording.table.record(hit);
            if !recorded.counted {
                continue;
            }
            recording.unsaved = true;
            recording.unsignalled = true;
            if !recorded.new_pair {
                continue;
            }
            let minute = clock.unix() / 60;
            if minute != recording.journal_minute {
                recording.journal_minute = minute;
                recording.journal_lines = 0;
            }
            recording.journal_lines += 1;
            match recording.journal_lines {
                n if n <= REFUSED_JOURNAL_PER_MINUTE => effects.push(Effect::JournalRefused(hit)),
                n if n == REFUSED_JOURNAL_PER_MINUTE + 1 => tracing::warn!(
                    "more than {REFUSED_JOURNAL_PER_MINUTE} sources refused for the first time this minute; the rest are not journalled (dockgatectl refused lists them all)"
                ),
                _ => {}
            }
        }
    }

    /// The NFLOG group to read, the refused-connections signal and the table's write, when due.
    fn refused_due(&mut self, clock: &Clock) -> Vec<Effect> {
        let mut effects = Vec::new();
        let recording = &mut self.refused;
        let group = self.config.refused.nflog_group;
        if recording.listening != Some(group) {
            recording.listening = Some(group);
            effects.push(Effect::ListenRefused(group));
        }
        if recording.unsignalled
            && recording
                .signalled_at
                .is_none_or(|at| at + REFUSED_SIGNAL_EVERY <= clock.now)
        {
            recording.unsignalled = false;
            recording.signalled_at = Some(clock.now);
            effects.push(Effect::Signal(Signal::RefusedChanged));
        }
        if recording.unsaved && recording.saved_at + REFUSED_SAVE_EVERY <= clock.now {
            recording.unsaved = false;
            recording.saved_at = clock.now;
            effects.push(Effect::SaveRefused(recording.table.saved()));
        }
        effects
    }

    fn rebuild_started(&mut self, since: u64, clock: &Clock) {
        self.rebuild_since = since;
        self.rebuild_started = clock.now;
        self.rebuild_seen = None;
    }

    fn rebuild_ended(&self, ended: Option<RebuildEnd>, clock: &Clock) {
        let took = clock.now.saturating_duration_since(self.rebuild_started);
        match ended {
            Some(RebuildEnd::Seen) => tracing::info!(
                after_ms = took.as_millis() as u64,
                "Docker's rebuild after the firewalld reload is over"
            ),
            Some(RebuildEnd::GaveUp) => tracing::warn!(
                "Docker's rebuild after the firewalld reload was not seen to end within {:?}; going on without it",
                rebuild::MAX_WAIT
            ),
            None => {}
        }
    }

    fn save(&mut self, next: Stored, purpose: Purpose, effects: &mut Vec<Effect>) {
        debug_assert!(
            self.saving.is_none(),
            "one write of the state file at a time"
        );
        effects.push(Effect::SaveExposures(next.clone()));
        self.saving = Some(Save { next, purpose });
    }

    fn config_loaded(
        &mut self,
        by: Option<(CallerId, u32)>,
        result: Result<Config, String>,
        clock: &Clock,
        effects: &mut Vec<Effect>,
    ) {
        let uid = by.map(|(_, uid)| uid);
        match result {
            Ok(config) => {
                tracing::info!(path = %self.config_path.display(), uid, "config reloaded");
                self.scheduler
                    .reconcile_after_rebuild(plan::waits_for_docker_rebuild(&config));
                self.refused
                    .table
                    .set_max_entries(config.refused.max_entries);
                self.config = config;
                self.scheduler
                    .add(Trigger::ConfigReloaded { uid }, clock.now);
                if let Some((caller, _)) = by {
                    self.waiting.push(Waiting {
                        caller,
                        answer: Answer::Done,
                        in_kernel_is_enough: false,
                    });
                }
            }
            Err(error) => {
                tracing::error!(%error, uid, "new config refused; keeping the last good policy");
                if let Some((caller, _)) = by {
                    effects.push(Effect::Reply(
                        caller,
                        Err(Error::Failed(format!(
                            "{error}; the last good config stays in force"
                        ))),
                    ));
                }
            }
        }
    }

    /// A caller's change: saved first, answered after the reconcile that applies it.
    fn call(&mut self, caller: CallerId, call: Call, clock: &Clock, effects: &mut Vec<Effect>) {
        match call {
            Call::Expose {
                exposure,
                ttl_seconds,
                uid,
            } => {
                if let Err(error) = self.within_limits(&exposure, uid, clock) {
                    tracing::warn!(uid, %error, "Expose refused");
                    effects.push(Effect::Reply(caller, Err(error)));
                    return;
                }
                let (next, id) = self.stored.with(exposure, ttl_seconds, uid, clock.unix());
                self.save(next, Purpose::Expose { caller, id, uid }, effects);
            }
            Call::Admit { uid } => {
                let answer = self.within_uid_bound(uid, clock).map(|()| Answer::Done);
                effects.push(Effect::Reply(caller, answer));
            }
            Call::Describe { id } => {
                let answer = self.find(&id, clock).map(Answer::Exposure);
                effects.push(Effect::Reply(caller, answer));
            }
            Call::Unexpose { id, uid, admin } => match self.find(&id, clock) {
                Err(error) => effects.push(Effect::Reply(caller, Err(error))),
                Ok(Listed {
                    origin: Origin::Config,
                    ..
                }) => effects.push(Effect::Reply(
                    caller,
                    Err(Error::ReadOnly(format!(
                        "{id} comes from {}; change it there",
                        self.config_path.display()
                    ))),
                )),
                // The owner may always; anyone else needs admin (root always has it).
                Ok(Listed {
                    origin: Origin::Runtime { owner_uid, .. },
                    ..
                }) if owner_uid != uid && uid != 0 && !admin => effects.push(Effect::Reply(
                    caller,
                    Err(Error::NotAuthorized(format!(
                        "{id} belongs to uid {owner_uid}; removing another user's exposure needs {}",
                        crate::api::ACTION_ADMIN
                    ))),
                )),
                Ok(_) => match self.stored.without(&id) {
                    Ok((next, _)) => {
                        self.save(next, Purpose::Unexpose { caller, id, uid }, effects)
                    }
                    Err(error) => effects.push(Effect::Reply(
                        caller,
                        Err(Error::NotFound(error.to_string())),
                    )),
                },
            },
            Call::Reconcile { uid } => {
                self.scheduler.add(Trigger::Reconcile { uid }, clock.now);
                self.waiting.push(Waiting {
                    caller,
                    answer: Answer::Done,
                    in_kernel_is_enough: false,
                });
            }
            Call::ReloadConfig { uid } => effects.push(Effect::LoadConfig {
                by: Some((caller, uid)),
            }),
            Call::ListRefused { since } => effects.push(Effect::Reply(
                caller,
                Ok(Answer::Refused(self.refused.table.list(since))),
            )),
        }
    }

    /// An exposure by its id: the config's ("config-N") or a runtime one in force.
    fn find(&self, id: &str, clock: &Clock) -> Result<Listed, Error> {
        let (in_force, _) = self.stored.expire(clock.unix());
        crate::exposures::listed(&self.config, in_force.all())
            .into_iter()
            .find(|listed| listed.id == id)
            .ok_or_else(|| Error::NotFound(format!("no exposure {id}")))
    }

    /// The bounds of `[limits]` on a new runtime exposure; root is bounded only by the total.
    fn within_limits(&self, exposure: &Exposure, uid: u32, clock: &Clock) -> Result<(), Error> {
        let limits = self.config.limits;
        let (in_force, _) = self.stored.expire(clock.unix());
        let total = in_force.all().len();
        if total >= limits.exposures_total as usize {
            return Err(Error::LimitExceeded(format!(
                "limits.exposures_total: {total} runtime exposures exist, the most allowed; \
                 remove some, or raise the bound in {}",
                self.config_path.display()
            )));
        }
        if uid == 0 {
            return Ok(());
        }
        self.within_uid_bound(uid, clock)?;
        if exposure.from.len() > limits.sources_per_exposure as usize {
            return Err(Error::LimitExceeded(format!(
                "limits.sources_per_exposure: {} sources, at most {} per exposure; \
                 use CIDRs or ranges",
                exposure.from.len(),
                limits.sources_per_exposure
            )));
        }
        Ok(())
    }

    /// The bound on one uid's runtime exposures (root has none).
    fn within_uid_bound(&self, uid: u32, clock: &Clock) -> Result<(), Error> {
        let (in_force, _) = self.stored.expire(clock.unix());
        let owned = in_force
            .all()
            .iter()
            .filter(|entry| entry.owner_uid == uid)
            .count();
        if uid != 0 && owned >= self.config.limits.exposures_per_uid as usize {
            return Err(Error::LimitExceeded(format!(
                "limits.exposures_per_uid: uid {uid} holds {owned} runtime exposures, the most \
                 allowed; remove one first (dockgatectl list, dockgatectl unexpose ID)"
            )));
        }
        Ok(())
    }

    fn saved(&mut self, result: Result<(), String>, clock: &Clock, effects: &mut Vec<Effect>) {
        let Some(Save { next, purpose }) = self.saving.take() else {
            return;
        };
        match (result, purpose) {
            (Ok(()), purpose) => {
                self.stored = next;
                match purpose {
                    Purpose::Expose { caller, id, uid } => {
                        self.scheduler.add(
                            Trigger::Expose {
                                id: id.clone(),
                                uid,
                            },
                            clock.now,
                        );
                        self.waiting.push(Waiting {
                            caller,
                            answer: Answer::Id(id),
                            in_kernel_is_enough: true,
                        });
                    }
                    Purpose::Unexpose { caller, id, uid } => {
                        self.scheduler.add(Trigger::Unexpose { id, uid }, clock.now);
                        self.waiting.push(Waiting {
                            caller,
                            answer: Answer::Done,
                            in_kernel_is_enough: true,
                        });
                    }
                    Purpose::Cleanup => self.cleanup.succeeded(),
                }
            }
            (Err(error), Purpose::Expose { caller, .. } | Purpose::Unexpose { caller, .. }) => {
                tracing::error!(%error, "cannot save the runtime exposures; the call changes nothing");
                effects.push(Effect::Reply(
                    caller,
                    Err(Error::Failed(format!("{error}; nothing was changed"))),
                ));
            }
            (Err(error), Purpose::Cleanup) => {
                let wait = self.cleanup.failed(clock.now);
                tracing::error!(%error, retry_in_ms = wait.as_millis() as u64, "cannot take expired exposures out of the state file; they are out of the rules already");
            }
        }
    }

    fn docker_read(
        &mut self,
        result: Result<DockerView, String>,
        clock: &Clock,
        effects: &mut Vec<Effect>,
    ) {
        let Some(reconciling) = self.reconciling.as_ref() else {
            return;
        };
        let docker_answered = match result {
            Ok(view) => {
                if view != self.view {
                    effects.push(Effect::SaveDockerView(view.clone()));
                    self.view = view;
                }
                true
            }
            Err(error) => {
                // What is judged must not shrink because Docker does not answer (stopped with
                // live-restore, restarting, hung): its last view stands, custom bridge names
                // and all, and Docker's own names are judged whatever it says.
                tracing::warn!(%error, ports = self.view.ports.len(), bridges = ?self.view.bridges, "Docker is not reachable; judging what it last published");
                false
            }
        };
        let view = self.view.clone();
        tracing::debug!(
            ports = view.ports.len(),
            bridges = view.bridges.len(),
            "Docker read"
        );
        // Expired exposures are out of the plan whether or not the state file says so yet.
        let (in_force, _) = self.stored.expire(clock.unix());
        let inputs = Inputs {
            config: &self.config,
            runtime: in_force.all(),
            docker: &view,
            docker_up: docker_answered && self.docker_running != Some(false),
            rebuilding: self.scheduler.docker_rebuilding(),
        };
        let listed = inputs.listed();
        let mut desired = plan::desired(&inputs);
        desired.reseat_verdict = reconciling.batch.contains(&Trigger::DockerRebuilt);
        self.planned_at = clock.unix();
        let planned = Planned {
            desired,
            view,
            docker_answered,
            listed,
        };
        let unchanged = reconciling.batch.only_docker_events()
            && !self.scheduler.retrying()
            && self.applied.as_ref()
                == Some(&(planned.desired.plan.clone(), planned.view.bridges.clone()));
        if unchanged {
            tracing::debug!(
                trigger = reconciling.batch.to_string(),
                "Docker changed nothing dockgate enforces"
            );
            self.status_now(&planned);
            if let Some(reconciling) = self.reconciling.take() {
                self.answer(reconciling.callers, Ok(()), effects);
            }
            self.publish(true, effects);
            return;
        }
        effects.push(Effect::ApplyRuntime(planned.desired.clone()));
        if let Some(reconciling) = self.reconciling.as_mut() {
            reconciling.stage = Stage::Applying(planned);
        }
    }

    fn in_kernel(
        &mut self,
        result: Result<Outcome, Failure>,
        clock: &Clock,
        effects: &mut Vec<Effect>,
    ) {
        let Some(Reconciling {
            stage: Stage::Applying(planned),
            ..
        }) = self.reconciling.as_ref()
        else {
            return;
        };
        let mut planned = planned.clone();
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(failure) => return self.fail(planned, failure, clock, effects),
        };
        tracing::debug!(writes = outcome.writes, "the kernel holds the rules");
        if outcome.reloaded {
            // Docker rebuilds after the reload just made: the bridges wait for it.
            let since = self
                .reconciling
                .as_ref()
                .map_or(clock.unix(), |r| r.started_unix);
            self.rebuild_started(since, clock);
            self.scheduler.firewalld_reloaded_by_us(clock.now);
            if matches!(planned.desired.bridges, Binding::Bind { .. }) {
                planned.desired.bridges = Binding::Leave;
            }
        }
        // What a caller reads right after its answer: the rules now in the kernel.
        self.status_now(&planned);
        self.status.rule_count = planned.desired.plan.rules.len() as u32;
        self.publish(false, effects);
        if let Some(reconciling) = self.reconciling.as_mut() {
            let (now, later) = std::mem::take(&mut reconciling.callers)
                .into_iter()
                .partition(|caller| caller.in_kernel_is_enough);
            reconciling.callers = later;
            self.answer(now, Ok(()), effects);
        }
        effects.push(Effect::ApplyRest {
            desired: planned.desired.clone(),
            outcome,
        });
        if let Some(reconciling) = self.reconciling.as_mut() {
            reconciling.stage = Stage::Applying(planned);
        }
    }

    fn applied(
        &mut self,
        result: Result<(Outcome, Vec<String>), Failure>,
        clock: &Clock,
        effects: &mut Vec<Effect>,
    ) {
        let Some(Reconciling {
            stage: Stage::Applying(planned),
            batch,
            ..
        }) = self.reconciling.as_ref()
        else {
            return;
        };
        let planned = planned.clone();
        let (outcome, moved) = match result {
            Ok(done) => done,
            Err(failure) => return self.fail(planned, failure, clock, effects),
        };
        if !moved.is_empty() {
            tracing::info!(?moved, bound_to = ?planned.desired.bridges, "bridges moved");
        }
        self.scheduler.succeeded(clock.now);
        self.applied = Some((planned.desired.plan.clone(), planned.view.bridges.clone()));
        if batch.may_change_zones() || self.status.host_zones.is_none() {
            effects.push(Effect::ReadHostZones);
            if let Some(reconciling) = self.reconciling.as_mut() {
                reconciling.stage = Stage::ReadingZones(planned, outcome);
            }
        } else {
            self.succeed(planned, outcome, None, clock, effects);
        }
    }

    /// The end of a reconcile that applied the plan.
    fn succeed(
        &mut self,
        planned: Planned,
        outcome: Outcome,
        zones: Option<HostZones>,
        clock: &Clock,
        effects: &mut Vec<Effect>,
    ) {
        let Some(reconciling) = self.reconciling.take() else {
            return;
        };
        let rules = planned.desired.plan.rules.len() as u32;
        self.status_now(&planned);
        self.status.firewalld_connected = true;
        self.status.rule_count = rules;
        self.status.last_reconcile = clock.unix_micros;
        if zones.is_some() {
            self.status.host_zones = zones;
        }
        let duration = clock.now.saturating_duration_since(reconciling.started);
        self.status.last_reconcile_duration_us = duration.as_micros() as u64;
        tracing::info!(
            trigger = reconciling.batch.to_string(),
            rules,
            added = outcome.rules_added,
            removed = outcome.rules_removed,
            writes = outcome.writes,
            bridges_moved = outcome.bridges_moved,
            reloaded = outcome.reloaded,
            duration_ms = duration.as_millis() as u64,
            "reconciled"
        );
        self.answer(reconciling.callers, Ok(()), effects);
        effects.push(Effect::Signal(Signal::Reconciled {
            trigger: reconciling.batch.kinds(),
            rules,
            duration_us: duration.as_micros() as u64,
        }));
        self.publish(true, effects);
    }

    /// The end of a reconcile that could not apply the plan: retried with backoff.
    fn fail(
        &mut self,
        planned: Planned,
        failure: Failure,
        clock: &Clock,
        effects: &mut Vec<Effect>,
    ) {
        let Some(reconciling) = self.reconciling.take() else {
            return;
        };
        self.applied = None;
        let wait = self.scheduler.failed(clock.now);
        tracing::warn!(
            trigger = reconciling.batch.to_string(),
            error = failure.message,
            retry_in_ms = wait.as_millis() as u64,
            "reconcile failed"
        );
        self.status_now(&planned);
        self.status.firewalld_connected = !failure.firewalld_down;
        self.answer(reconciling.callers, Err(&failure), effects);
        self.publish(true, effects);
    }

    /// The status as this reconcile sees the world.
    fn status_now(&mut self, planned: &Planned) {
        self.status.docker_connected = planned.docker_answered;
        self.status.config = self.config.clone();
        self.status.bridge_zone = bridge_zone(&self.config);
        self.status.exposures = planned.listed.clone();
        self.status.ports = planned.view.ports.clone();
    }

    fn answer(
        &self,
        callers: Vec<Waiting>,
        outcome: Result<(), &Failure>,
        effects: &mut Vec<Effect>,
    ) {
        for Waiting { caller, answer, .. } in callers {
            let reply = match outcome {
                Ok(()) => Ok(answer),
                Err(failure) if failure.firewalld_down => Err(Error::FirewallUnavailable(
                    "firewalld is not running; the change is saved and applied when it is"
                        .to_owned(),
                )),
                Err(failure) => Err(Error::Failed(format!(
                    "{}; the change is saved and retried",
                    failure.message
                ))),
            };
            effects.push(Effect::Reply(caller, reply));
        }
    }

    /// The status for the API; with `announce`, the signals for what changed since the last
    /// announcement, and the bus name once the first reconcile is over.
    fn publish(&mut self, announce: bool, effects: &mut Vec<Effect>) {
        effects.push(Effect::Publish(self.status.clone()));
        if !announce {
            return;
        }
        let changes = self.announced.update(&self.status);
        if changes.exposures {
            effects.push(Effect::Signal(Signal::ExposuresChanged));
        }
        if changes.ports {
            effects.push(Effect::Signal(Signal::PortsChanged));
        }
        effects.extend(
            changes
                .properties
                .into_iter()
                .map(|property| Effect::Signal(Signal::PropertyChanged(property))),
        );
        if !self.serving {
            self.serving = true;
            effects.push(Effect::Serve);
        }
    }
}

#[cfg(test)]
mod tests;
