//! When the daemon reconciles: what it reacts to ([`Trigger`]), how bursts are coalesced, and
//! its timers (retry with backoff, Docker's rebuild after a firewalld reload, the next
//! expiry). Pure: the daemon passes the time in and waits on [`Scheduler::next_wake`] with a
//! timer.

use std::collections::BTreeSet;
use std::fmt;
use std::time::{Duration, Instant};

use crate::rebuild;

/// How long to wait for more events after the first one before reconciling: Docker starting a
/// hundred containers sends hundreds of events within a few hundred milliseconds.
pub const COALESCE: Duration = Duration::from_millis(100);
/// While Docker's events keep coming (a burst of container starts takes Docker seconds), at most
/// one reconcile per this interval for them. Waiting is safe: a container nobody exposed yet is
/// denied until the reconcile.
pub const DOCKER_BURST_GAP: Duration = Duration::from_secs(1);
pub const FIRST_RETRY: Duration = Duration::from_millis(500);
pub const MAX_RETRY: Duration = Duration::from_secs(30);

/// Something that calls for a reconcile.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Trigger {
    Start,
    /// The last reconcile failed; its backoff is over.
    Retry,
    FirewalldReloaded,
    /// firewalld appeared on the bus (it sends no `Reloaded` when it starts).
    FirewalldStarted,
    /// An interface entered a zone at run time (Docker adds its bridges to zone docker).
    BridgeMoved {
        interface: String,
        zone: String,
    },
    /// A zone's ports or services changed at run time: what docker-proxy's ports are judged by.
    ZoneChanged {
        zone: String,
    },
    /// Docker's event stream is (re)connected: dockerd is up with its bridges in zone docker.
    DockerConnected,
    /// Docker's event stream ended: dockerd is stopping or restarting.
    DockerStopped,
    Container {
        action: String,
    },
    Network {
        action: String,
    },
    /// The config was read again: by SIGHUP (no uid) or a D-Bus caller.
    ConfigReloaded {
        uid: Option<u32>,
    },
    Expose {
        id: String,
        uid: u32,
    },
    Unexpose {
        id: String,
        uid: u32,
    },
    Reconcile {
        uid: u32,
    },
    ExposureExpired,
    /// Docker's rebuild after a firewalld reload or start is over.
    DockerRebuilt,
}

impl Trigger {
    /// What kind of trigger it is, for everyone on the bus (the `Reconciled` signal): no
    /// exposure id, uid, address or interface, which only the journal gets.
    pub fn kind(&self) -> &'static str {
        match self {
            Trigger::Start => "start",
            Trigger::Retry => "retry",
            Trigger::FirewalldReloaded => "firewalld-reloaded",
            Trigger::FirewalldStarted => "firewalld-started",
            Trigger::BridgeMoved { .. } => "bridge-moved",
            Trigger::ZoneChanged { .. } => "zone-changed",
            Trigger::DockerConnected => "docker-connected",
            Trigger::DockerStopped => "docker-stopped",
            Trigger::Container { .. } => "container",
            Trigger::Network { .. } => "network",
            Trigger::ConfigReloaded { .. } => "config-reloaded",
            Trigger::Expose { .. } => "expose",
            Trigger::Unexpose { .. } => "unexpose",
            Trigger::Reconcile { .. } => "reconcile",
            Trigger::ExposureExpired => "exposure-expired",
            Trigger::DockerRebuilt => "docker-rebuilt",
        }
    }

    pub fn is_docker_event(&self) -> bool {
        matches!(self, Trigger::Container { .. } | Trigger::Network { .. })
    }

    /// Does not wait for more events: a caller waits, Docker came or went (its bridges must
    /// be where it needs them), or a timer of the scheduler's own is due.
    fn is_urgent(&self) -> bool {
        matches!(
            self,
            Trigger::Start
                | Trigger::Retry
                | Trigger::DockerConnected
                | Trigger::DockerStopped
                | Trigger::ConfigReloaded { uid: Some(_) }
                | Trigger::Expose { .. }
                | Trigger::Unexpose { .. }
                | Trigger::Reconcile { .. }
                | Trigger::ExposureExpired
                | Trigger::DockerRebuilt
        )
    }

    /// firewalld has just restored its rules, and Docker is rebuilding its own.
    pub fn starts_docker_rebuild(&self) -> bool {
        matches!(self, Trigger::FirewalldReloaded | Trigger::FirewalldStarted)
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trigger::Start => f.write_str("start"),
            Trigger::Retry => f.write_str("retry"),
            Trigger::FirewalldReloaded => f.write_str("firewalld reloaded"),
            Trigger::FirewalldStarted => f.write_str("firewalld started"),
            Trigger::BridgeMoved { interface, zone } => {
                write!(f, "{interface} moved to zone {zone}")
            }
            Trigger::ZoneChanged { zone } => write!(f, "zone {zone} changed"),
            Trigger::DockerConnected => f.write_str("docker connected"),
            Trigger::DockerStopped => f.write_str("docker stopped"),
            Trigger::Container { action } => write!(f, "container {action}"),
            Trigger::Network { action } => write!(f, "network {action}"),
            Trigger::ConfigReloaded { uid: None } => f.write_str("config reloaded"),
            Trigger::ConfigReloaded { uid: Some(uid) } => write!(f, "ReloadConfig by uid {uid}"),
            Trigger::Expose { id, uid } => write!(f, "Expose {id} by uid {uid}"),
            Trigger::Unexpose { id, uid } => write!(f, "Unexpose {id} by uid {uid}"),
            Trigger::Reconcile { uid } => write!(f, "Reconcile by uid {uid}"),
            Trigger::ExposureExpired => f.write_str("exposure expired"),
            Trigger::DockerRebuilt => f.write_str("after Docker's rebuild"),
        }
    }
}

/// The triggers of one reconcile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch(pub BTreeSet<Trigger>);

impl Batch {
    pub fn contains(&self, trigger: &Trigger) -> bool {
        self.0.contains(trigger)
    }

    /// Whether firewalld's zones may have changed since they were last read (they judge the
    /// ports docker-proxy serves): not for a caller's exposure or a Docker event alone.
    pub fn may_change_zones(&self) -> bool {
        self.0.iter().any(|trigger| {
            matches!(
                trigger,
                Trigger::Start
                    | Trigger::Retry
                    | Trigger::FirewalldReloaded
                    | Trigger::FirewalldStarted
                    | Trigger::BridgeMoved { .. }
                    | Trigger::ZoneChanged { .. }
                    | Trigger::ConfigReloaded { .. }
                    | Trigger::Reconcile { .. }
            )
        })
    }

    /// The kinds of its triggers, each once, comma-joined ("expose,firewalld-reloaded").
    pub fn kinds(&self) -> String {
        let mut kinds: Vec<&str> = self.0.iter().map(Trigger::kind).collect();
        kinds.dedup();
        kinds.join(",")
    }

    /// Only container and network events: a reconcile that would change nothing needs no
    /// firewalld call at all.
    pub fn only_docker_events(&self) -> bool {
        !self.0.is_empty() && self.0.iter().all(Trigger::is_docker_event)
    }
}

impl fmt::Display for Batch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let texts: Vec<String> = self.0.iter().map(Trigger::to_string).collect();
        f.write_str(&texts.join(","))
    }
}

/// Docker rebuilding its rules after a firewalld reload or start (see `crate::rebuild`).
#[derive(Debug, Clone)]
struct Rebuild {
    /// When to look next; None while a look is under way.
    look_at: Option<Instant>,
    give_up_at: Instant,
}

/// How a rebuild of Docker's came to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebuildEnd {
    Seen,
    /// Not seen within [`rebuild::MAX_WAIT`]: dockgated goes on without it.
    GaveUp,
}

#[derive(Debug, Clone)]
pub struct Scheduler {
    pending: BTreeSet<Trigger>,
    /// When the first of the pending triggers came.
    pending_since: Option<Instant>,
    last_reconcile: Option<Instant>,
    retry_at: Option<Instant>,
    retry_delay: Duration,
    rebuild: Option<Rebuild>,
    /// Whether anything waits for the end of Docker's rebuild (binding the bridges, putting
    /// the resets back in front): only then is it a reconcile of its own.
    after_rebuild: bool,
}

impl Scheduler {
    /// The first reconcile is due at once.
    pub fn new(now: Instant) -> Self {
        Scheduler {
            pending: BTreeSet::from([Trigger::Start]),
            pending_since: Some(now),
            last_reconcile: None,
            retry_at: None,
            retry_delay: FIRST_RETRY,
            rebuild: None,
            after_rebuild: true,
        }
    }

    /// Whether the end of Docker's rebuild calls for a reconcile (the config binds the bridges
    /// or puts resets in filter FORWARD); either way the bridges are not bound while Docker
    /// rebuilds.
    pub fn reconcile_after_rebuild(&mut self, wanted: bool) {
        self.after_rebuild = wanted;
    }

    pub fn add(&mut self, trigger: Trigger, now: Instant) {
        if trigger.starts_docker_rebuild() {
            self.rebuild_started(now);
        }
        if self.pending.is_empty() {
            self.pending_since = Some(now);
        }
        self.pending.insert(trigger);
    }

    /// dockgate reloaded firewalld itself (first rules on firewalld 2.x, CleanupOnExit, zone
    /// target): Docker rebuilds now.
    pub fn firewalld_reloaded_by_us(&mut self, now: Instant) {
        self.rebuild_started(now);
    }

    fn rebuild_started(&mut self, now: Instant) {
        self.rebuild = Some(Rebuild {
            look_at: Some(now + rebuild::LOOK_EVERY),
            give_up_at: now + rebuild::MAX_WAIT,
        });
    }

    /// Docker is rebuilding its rules: leave the bridges where they are.
    pub fn docker_rebuilding(&self) -> bool {
        self.rebuild.is_some()
    }

    /// Whether it is time for a look at Docker's rebuild; until [`Scheduler::looked`], no other.
    pub fn take_look(&mut self, now: Instant) -> bool {
        match &mut self.rebuild {
            Some(rebuild) if rebuild.look_at.is_some_and(|at| at <= now) => {
                rebuild.look_at = None;
                true
            }
            _ => false,
        }
    }

    /// What the look saw: whether the rebuild is over. Returns how it ended, if it did.
    pub fn looked(&mut self, over: bool, now: Instant) -> Option<RebuildEnd> {
        let rebuild = self.rebuild.as_mut()?;
        let end = if over {
            RebuildEnd::Seen
        } else if now >= rebuild.give_up_at {
            RebuildEnd::GaveUp
        } else {
            rebuild.look_at = Some(now + rebuild::LOOK_EVERY);
            return None;
        };
        self.rebuild = None;
        if self.after_rebuild {
            self.add(Trigger::DockerRebuilt, now);
        }
        Some(end)
    }

    /// When the pending triggers are due.
    fn due_at(&self) -> Option<Instant> {
        let since = self.pending_since.filter(|_| !self.pending.is_empty())?;
        if self.pending.iter().any(Trigger::is_urgent) {
            return Some(since);
        }
        let mut at = since + COALESCE;
        if self.pending.iter().all(Trigger::is_docker_event)
            && let Some(last) = self.last_reconcile
        {
            at = at.max(last + DOCKER_BURST_GAP);
        }
        Some(at)
    }

    /// When the daemon must look again even if no message comes: the pending triggers are
    /// due, a retry, a look at Docker's rebuild, or `expiry` (the next exposure's).
    pub fn next_wake(&self, expiry: Option<Instant>) -> Option<Instant> {
        let look = self.rebuild.as_ref().and_then(|rebuild| rebuild.look_at);
        [self.due_at(), self.retry_at, look, expiry]
            .into_iter()
            .flatten()
            .min()
    }

    /// The triggers of the reconcile to run now, if one is due.
    pub fn take_due(&mut self, now: Instant, expiry: Option<Instant>) -> Option<Batch> {
        if self.retry_at.is_some_and(|at| at <= now) {
            self.retry_at = None;
            self.add(Trigger::Retry, now);
        }
        if expiry.is_some_and(|at| at <= now) {
            self.add(Trigger::ExposureExpired, now);
        }
        if self.due_at()? > now {
            return None;
        }
        self.pending_since = None;
        Some(Batch(std::mem::take(&mut self.pending)))
    }

    pub fn succeeded(&mut self, now: Instant) {
        self.retry_at = None;
        self.retry_delay = FIRST_RETRY;
        self.last_reconcile = Some(now);
    }

    /// Schedules the retry; returns how long it waits.
    pub fn failed(&mut self, now: Instant) -> Duration {
        let wait = self.retry_delay;
        self.retry_at = Some(now + wait);
        self.retry_delay = (wait * 2).min(MAX_RETRY);
        wait
    }

    /// A retry is pending: the last reconcile failed.
    pub fn retrying(&self) -> bool {
        self.retry_at.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn container(action: &str) -> Trigger {
        Trigger::Container {
            action: action.to_owned(),
        }
    }

    #[test]
    fn the_first_reconcile_is_due_at_once() {
        let t0 = Instant::now();
        let mut scheduler = Scheduler::new(t0);
        assert_eq!(scheduler.next_wake(None), Some(t0));
        let batch = scheduler.take_due(t0, None).unwrap();
        assert_eq!(batch.to_string(), "start");
        assert_eq!(scheduler.next_wake(None), None, "nothing left to do");
        assert!(scheduler.take_due(t0 + ms(10), None).is_none());
    }

    #[test]
    fn events_within_the_window_make_one_reconcile() {
        let t0 = Instant::now();
        let mut scheduler = Scheduler::new(t0);
        scheduler.take_due(t0, None);
        scheduler.succeeded(t0);
        let t1 = t0 + ms(5000);
        scheduler.add(Trigger::FirewalldReloaded, t1);
        scheduler.add(
            Trigger::BridgeMoved {
                interface: "docker0".into(),
                zone: "docker".into(),
            },
            t1 + ms(30),
        );
        assert!(scheduler.take_due(t1 + ms(99), None).is_none());
        let batch = scheduler.take_due(t1 + COALESCE, None).unwrap();
        assert_eq!(
            batch.to_string(),
            "firewalld reloaded,docker0 moved to zone docker"
        );
    }

    #[test]
    fn a_docker_burst_reconciles_at_most_once_a_second() {
        let t0 = Instant::now();
        let mut scheduler = Scheduler::new(t0);
        scheduler.take_due(t0, None);
        scheduler.succeeded(t0);
        scheduler.add(container("start"), t0 + ms(200));
        assert_eq!(scheduler.next_wake(None), Some(t0 + DOCKER_BURST_GAP));
        assert!(scheduler.take_due(t0 + ms(300), None).is_none());
        let batch = scheduler.take_due(t0 + DOCKER_BURST_GAP, None).unwrap();
        assert!(batch.only_docker_events());
        // Once anything else comes, the ordinary window applies.
        let t1 = t0 + ms(1500);
        scheduler.succeeded(t1);
        scheduler.add(container("die"), t1 + ms(10));
        scheduler.add(Trigger::FirewalldReloaded, t1 + ms(20));
        let batch = scheduler.take_due(t1 + ms(10) + COALESCE, None).unwrap();
        assert!(!batch.only_docker_events());
    }

    #[test]
    fn callers_and_docker_coming_and_going_do_not_wait() {
        let t0 = Instant::now();
        let mut scheduler = Scheduler::new(t0);
        scheduler.take_due(t0, None);
        scheduler.succeeded(t0);
        for urgent in [
            Trigger::Expose {
                id: "runtime-1".into(),
                uid: 0,
            },
            Trigger::DockerConnected,
            Trigger::DockerStopped,
            Trigger::ConfigReloaded { uid: Some(0) },
        ] {
            let t = t0 + ms(10);
            scheduler.add(container("start"), t);
            scheduler.add(urgent.clone(), t + ms(1));
            let batch = scheduler.take_due(t + ms(1), None).unwrap_or_else(|| {
                panic!("{urgent} waited");
            });
            assert!(batch.contains(&urgent) && batch.contains(&container("start")));
            // A caller's exposure or Docker's coming and going does not change firewalld's
            // zones; a config reload may (external_interfaces).
            assert_eq!(
                batch.may_change_zones(),
                matches!(urgent, Trigger::ConfigReloaded { .. })
            );
        }
        // SIGHUP is no caller: it waits for the window like other events.
        scheduler.add(Trigger::ConfigReloaded { uid: None }, t0 + ms(20));
        assert!(scheduler.take_due(t0 + ms(21), None).is_none());
    }

    #[test]
    fn failures_back_off_doubling_to_thirty_seconds_and_success_resets() {
        let t0 = Instant::now();
        let mut scheduler = Scheduler::new(t0);
        scheduler.take_due(t0, None);
        let mut now = t0;
        let mut waits = Vec::new();
        for _ in 0..9 {
            let wait = scheduler.failed(now);
            waits.push(wait.as_millis());
            assert_eq!(scheduler.next_wake(None), Some(now + wait));
            assert!(scheduler.take_due(now + wait - ms(1), None).is_none());
            now += wait;
            let batch = scheduler.take_due(now, None).unwrap();
            assert_eq!(batch.to_string(), "retry");
        }
        assert_eq!(
            waits,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        scheduler.succeeded(now);
        assert!(!scheduler.retrying());
        assert_eq!(scheduler.failed(now), FIRST_RETRY);
    }

    #[test]
    fn bridges_wait_for_dockers_rebuild_after_any_firewalld_reload() {
        let t0 = Instant::now();
        let mut scheduler = Scheduler::new(t0);
        scheduler.take_due(t0, None);
        assert!(!scheduler.docker_rebuilding());
        // dockgate's own reload, then the Reloaded signal it causes: the looks run from the
        // signal.
        scheduler.firewalld_reloaded_by_us(t0);
        assert!(scheduler.docker_rebuilding());
        scheduler.add(Trigger::FirewalldReloaded, t0 + ms(50));
        let batch = scheduler.take_due(t0 + ms(50) + COALESCE, None).unwrap();
        assert!(batch.contains(&Trigger::FirewalldReloaded));
        let look = t0 + ms(50) + rebuild::LOOK_EVERY;
        assert_eq!(scheduler.next_wake(None), Some(look));
        assert!(!scheduler.take_look(look - ms(1)));
        assert!(scheduler.take_look(look));
        assert!(!scheduler.take_look(look), "one look at a time");
        assert_eq!(scheduler.next_wake(None), None, "waiting for the look");
        assert_eq!(scheduler.looked(false, look + ms(5)), None);
        assert!(scheduler.docker_rebuilding(), "still rebuilding");
        let next = look + ms(5) + rebuild::LOOK_EVERY;
        assert_eq!(scheduler.next_wake(None), Some(next));
        assert!(scheduler.take_look(next));
        assert_eq!(scheduler.looked(true, next), Some(RebuildEnd::Seen));
        assert!(!scheduler.docker_rebuilding());
        let batch = scheduler.take_due(next, None).unwrap();
        assert_eq!(batch.to_string(), "after Docker's rebuild");
        // With nothing waiting for it, the end of the rebuild is no reconcile of its own.
        scheduler.reconcile_after_rebuild(false);
        scheduler.add(Trigger::FirewalldReloaded, next);
        scheduler.take_due(next + COALESCE, None).unwrap();
        let later = next + rebuild::LOOK_EVERY;
        assert!(scheduler.take_look(later));
        assert_eq!(scheduler.looked(true, later), Some(RebuildEnd::Seen));
        assert!(scheduler.take_due(later, None).is_none());
        assert_eq!(scheduler.next_wake(None), None);
    }

    #[test]
    fn a_rebuild_never_seen_to_end_is_given_up_after_the_bound() {
        let t0 = Instant::now();
        let mut scheduler = Scheduler::new(t0);
        scheduler.take_due(t0, None);
        scheduler.add(Trigger::FirewalldStarted, t0);
        scheduler.take_due(t0 + COALESCE, None);
        let mut now;
        let mut looks = 0;
        let end = loop {
            now = scheduler.next_wake(None).unwrap();
            assert!(scheduler.take_look(now));
            looks += 1;
            if let Some(end) = scheduler.looked(false, now) {
                break end;
            }
        };
        assert_eq!(end, RebuildEnd::GaveUp);
        assert!(now - t0 >= rebuild::MAX_WAIT && now - t0 < rebuild::MAX_WAIT + ms(300));
        assert_eq!(looks as u32, rebuild::MAX_WAIT.as_millis() as u32 / 250);
        assert!(
            scheduler
                .take_due(now, None)
                .unwrap()
                .contains(&Trigger::DockerRebuilt)
        );
    }

    #[test]
    fn an_expiry_wakes_the_daemon_on_time() {
        let t0 = Instant::now();
        let mut scheduler = Scheduler::new(t0);
        scheduler.take_due(t0, None);
        let expiry = t0 + Duration::from_secs(60);
        assert_eq!(scheduler.next_wake(Some(expiry)), Some(expiry));
        assert!(scheduler.take_due(expiry - ms(1), Some(expiry)).is_none());
        let batch = scheduler.take_due(expiry, Some(expiry)).unwrap();
        assert_eq!(batch.to_string(), "exposure expired");
    }
}
