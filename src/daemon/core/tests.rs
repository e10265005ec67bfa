//! The core driven by a world that answers its effects as the shell would: Docker's view, a
//! firewalld that applies (or is down), a state dir that takes writes (or refuses them). The
//! world is plain data; every answer it gives is one the real shell can give.

use std::collections::VecDeque;

use super::*;
use crate::docker::Protocol;
use crate::testing::{config, published};

struct World {
    core: Core,
    clock: Clock,
    /// What Docker answers; Err: it does not.
    docker: Result<DockerView, String>,
    /// Whether writes to the state dir succeed.
    disk_ok: bool,
    /// Whether firewalld applies.
    firewalld_up: bool,
    /// Every plan applied at run time, in order.
    applied: Vec<Desired>,
    /// Every answer given, in order.
    replies: Vec<(CallerId, Result<Answer, Error>)>,
    /// Every signal, in order.
    signals: Vec<Signal>,
    /// Everything performed, by kind, in order.
    log: Vec<String>,
    saves: usize,
    served: bool,
    /// The Docker view last written to the state dir.
    saved_view: Option<DockerView>,
}

fn docker0_view() -> DockerView {
    DockerView {
        ports: vec![published("web", "0.0.0.0", 8080, Protocol::Tcp)],
        bridges: vec!["docker0".to_owned()],
    }
}

fn exposure(port: &str, source: &str) -> Exposure {
    crate::exposures::Request {
        port,
        sources: &[source.to_owned()],
        ..Default::default()
    }
    .check()
    .unwrap()
}

/// A network made with `-o com.docker.network.bridge.name=appnet0`: a bridge name that no
/// pattern of Docker's own covers.
fn appnet_view() -> DockerView {
    DockerView {
        ports: vec![published("app", "0.0.0.0", 8181, Protocol::Tcp)],
        bridges: vec!["appnet0".to_owned(), "docker0".to_owned()],
    }
}

impl World {
    fn new(config_text: &str) -> World {
        World::with_saved_view(config_text, DockerView::default())
    }

    /// A start with Docker's view as a previous run saved it.
    fn with_saved_view(config_text: &str, saved: DockerView) -> World {
        let clock = Clock {
            now: Instant::now(),
            unix_micros: 1_800_000_000_000_000,
        };
        World {
            core: Core::new(
                PathBuf::from("/etc/dockgate/dockgate.toml"),
                config(config_text),
                Stored::default(),
                saved,
                &clock,
            ),
            clock,
            docker: Ok(docker0_view()),
            disk_ok: true,
            firewalld_up: true,
            applied: Vec::new(),
            replies: Vec::new(),
            signals: Vec::new(),
            log: Vec::new(),
            saves: 0,
            served: false,
            saved_view: None,
        }
    }

    /// The world as it is once the first reconcile is over.
    fn started(config_text: &str) -> World {
        let mut world = World::new(config_text);
        world.settle();
        assert!(world.served, "the first reconcile serves the API");
        world.log.clear();
        world
    }

    fn advance(&mut self, duration: Duration) {
        self.clock.now += duration;
        self.clock.unix_micros += duration.as_micros() as u64;
    }

    fn unix(&self) -> u64 {
        self.clock.unix()
    }

    /// What the shell does with effects: performs them in order, each answer back at once.
    fn perform(&mut self, effects: Vec<Effect>) {
        let mut queue: VecDeque<Effect> = effects.into();
        while let Some(effect) = queue.pop_front() {
            let answer = match effect {
                Effect::Reply(caller, answer) => {
                    self.log.push("reply".into());
                    self.replies.push((caller, answer));
                    None
                }
                Effect::LoadConfig { .. } => unreachable!("the tests load no config"),
                Effect::SaveExposures(_) => {
                    self.log.push("save".into());
                    self.saves += 1;
                    Some(Event::ExposuresSaved(if self.disk_ok {
                        Ok(())
                    } else {
                        Err("No space left on device".to_owned())
                    }))
                }
                Effect::SaveDockerView(view) => {
                    self.saved_view = Some(view);
                    None
                }
                Effect::CheckFirewalldCopies => None,
                Effect::ReadDocker => {
                    self.log.push("read docker".into());
                    Some(Event::DockerRead(self.docker.clone()))
                }
                Effect::ApplyRuntime(desired) => {
                    self.log.push("apply runtime".into());
                    Some(Event::InKernel(if self.firewalld_up {
                        self.applied.push(desired);
                        Ok(Outcome::default())
                    } else {
                        Err(Failure {
                            firewalld_down: true,
                            message: "firewalld is not running".to_owned(),
                        })
                    }))
                }
                Effect::ApplyRest { outcome, .. } => {
                    self.log.push("apply rest".into());
                    Some(Event::Applied(Ok((outcome, Vec::new()))))
                }
                Effect::ReadHostZones => Some(Event::HostZones(Some(HostZones::default()))),
                Effect::Publish(_) => None,
                Effect::Signal(signal) => {
                    self.signals.push(signal);
                    None
                }
                Effect::Serve => {
                    self.log.push("serve".into());
                    self.served = true;
                    None
                }
                Effect::Exit => None,
            };
            if let Some(event) = answer {
                let mut next: VecDeque<Effect> = self.core.handle(event, &self.clock).into();
                next.append(&mut queue);
                queue = next;
            }
        }
    }

    fn handle(&mut self, event: Event) {
        let effects = self.core.handle(event, &self.clock);
        self.perform(effects);
    }

    /// Starts and finishes whatever is due now.
    fn settle(&mut self) {
        loop {
            let effects = self.core.poll(&self.clock);
            if effects.is_empty() {
                return;
            }
            self.perform(effects);
        }
    }

    /// Lets time pass until the core's next wake-up, and settles.
    fn wake(&mut self) {
        let at = self
            .core
            .next_wake(&self.clock)
            .expect("something to wake for");
        self.advance(at.saturating_duration_since(self.clock.now));
        self.settle();
    }

    fn call(&mut self, caller: CallerId, call: Call) {
        self.handle(Event::Call(caller, call));
        self.settle();
    }

    fn reply(&self, caller: CallerId) -> Option<&Result<Answer, Error>> {
        self.replies
            .iter()
            .find(|(id, _)| *id == caller)
            .map(|(_, answer)| answer)
    }

    fn last_plan(&self) -> String {
        self.applied
            .last()
            .expect("a plan was applied")
            .plan
            .render()
    }
}

const DENY: &str = "default = \"deny\"\n";

#[test]
fn the_api_is_served_once_the_first_reconcile_has_put_the_rules_in() {
    let mut world = World::new(DENY);
    world.settle();
    let at = |what: &str| world.log.iter().position(|done| done == what).unwrap();
    assert!(at("apply runtime") < at("serve"));
    assert!(at("apply rest") < at("serve"));
    assert_eq!(
        world.log.iter().filter(|done| *done == "serve").count(),
        1,
        "{:?}",
        world.log
    );
    // Serving once is enough: later reconciles do not serve again.
    world.log.clear();
    world.handle(Event::Trigger(Trigger::FirewalldReloaded));
    world.wake();
    assert!(world.log.contains(&"apply runtime".to_owned()));
    assert!(!world.log.contains(&"serve".to_owned()));
}

#[test]
fn the_api_is_served_also_when_firewalld_is_down_at_start() {
    let mut world = World::new(DENY);
    world.firewalld_up = false;
    world.settle();
    assert!(world.served);
    assert!(!world.core.status.firewalld_connected);
    // ... and the policy goes in with the retry once firewalld is back.
    world.firewalld_up = true;
    world.wake();
    assert_eq!(world.applied.len(), 1);
    assert!(world.core.status.firewalld_connected);
}

#[test]
fn an_exposure_is_answered_once_the_kernel_holds_it() {
    let mut world = World::started(DENY);
    world.call(
        1,
        Call::Expose {
            exposure: exposure("8080/tcp", "203.0.113.7"),
            ttl_seconds: 0,
            uid: 1000,
        },
    );
    assert_eq!(
        world.reply(1),
        Some(&Ok(Answer::Id("runtime-1".to_owned())))
    );
    let order: Vec<&str> = world.log.iter().map(String::as_str).collect();
    assert_eq!(
        order,
        [
            "save",
            "read docker",
            "apply runtime",
            "reply",
            "apply rest"
        ],
        "saved before it is applied, answered before the permanent layer"
    );
    assert!(world.last_plan().contains("dockgate:expose:runtime-1"));
    assert_eq!(world.core.stored().all().len(), 1);
}

#[test]
fn an_exposure_the_disk_does_not_take_changes_nothing() {
    let mut world = World::started(DENY);
    world.disk_ok = false;
    world.call(
        1,
        Call::Expose {
            exposure: exposure("8080/tcp", "203.0.113.7"),
            ttl_seconds: 0,
            uid: 1000,
        },
    );
    assert!(matches!(world.reply(1), Some(Err(Error::Failed(_)))));
    assert!(world.core.stored().all().is_empty());
    assert!(!world.log.contains(&"apply runtime".to_owned()));
}

#[test]
fn firewalld_stopping_during_a_call_keeps_the_exposure_and_retries() {
    let mut world = World::started(DENY);
    world.firewalld_up = false;
    world.call(
        1,
        Call::Expose {
            exposure: exposure("8080/tcp", "203.0.113.7"),
            ttl_seconds: 0,
            uid: 1000,
        },
    );
    assert!(matches!(
        world.reply(1),
        Some(Err(Error::FirewallUnavailable(_)))
    ));
    assert_eq!(world.core.stored().all().len(), 1, "the exposure is saved");
    let retry = world.core.next_wake(&world.clock).unwrap();
    assert_eq!(retry - world.clock.now, FIRST_RETRY);
    world.firewalld_up = true;
    world.wake();
    assert!(world.last_plan().contains("dockgate:expose:runtime-1"));
}

#[test]
fn unexposing_a_config_exposure_is_refused_and_an_unknown_id_is_not_found() {
    let mut world =
        World::started("default = \"deny\"\n[[expose]]\nport = \"443/tcp\"\nfrom = [\"any\"]\n");
    world.call(
        1,
        Call::Unexpose {
            id: "config-1".to_owned(),
            uid: 0,
        },
    );
    world.call(
        2,
        Call::Unexpose {
            id: "runtime-9".to_owned(),
            uid: 0,
        },
    );
    assert!(matches!(world.reply(1), Some(Err(Error::ReadOnly(_)))));
    assert!(matches!(world.reply(2), Some(Err(Error::NotFound(_)))));
    assert!(world.applied.len() == 1, "nothing reconciled for them");
}

#[test]
fn docker_events_that_change_nothing_make_no_firewalld_call() {
    let mut world = World::started(DENY);
    let applied = world.applied.len();
    world.handle(Event::Trigger(Trigger::Container {
        action: "start".to_owned(),
    }));
    world.wake();
    assert_eq!(world.log, ["read docker"]);
    assert_eq!(world.applied.len(), applied);
    // A container that publishes a new port does change the plan's view.
    world.docker = Ok(DockerView {
        ports: vec![
            published("web", "0.0.0.0", 8080, Protocol::Tcp),
            published("db", "0.0.0.0", 5432, Protocol::Tcp),
        ],
        bridges: vec!["docker0".to_owned(), "br-0123456789ab".to_owned()],
    });
    world.handle(Event::Trigger(Trigger::Network {
        action: "create".to_owned(),
    }));
    world.wake();
    assert_eq!(world.applied.len(), applied + 1);
}

#[test]
fn an_expired_exposure_leaves_the_plan_even_when_the_state_file_cannot_be_written() {
    let mut world = World::started(DENY);
    world.call(
        1,
        Call::Expose {
            exposure: exposure("8080/tcp", "203.0.113.7"),
            ttl_seconds: 60,
            uid: 1000,
        },
    );
    assert!(world.last_plan().contains("runtime-1"));
    world.disk_ok = false;
    let saves = world.saves;
    // The expiry is a wake-up of its own.
    world.wake();
    assert!(world.unix() >= 1_800_000_060);
    assert!(
        !world.last_plan().contains("runtime-1"),
        "out of the rules at its time, written or not"
    );
    // The write is retried with backoff, without reconciling again each time.
    let reconciles = world.applied.len();
    for _ in 0..6 {
        world.wake();
    }
    assert_eq!(world.applied.len(), reconciles, "no reconcile loop");
    assert!(world.saves > saves + 1, "the write was retried");
    let gap = world.core.next_wake(&world.clock).unwrap() - world.clock.now;
    assert!(gap >= Duration::from_secs(8), "backing off: {gap:?}");
    world.disk_ok = true;
    world.wake();
    assert!(
        world.core.stored().all().is_empty(),
        "written once the disk takes it"
    );
    assert_eq!(world.core.next_wake(&world.clock), None);
}

#[test]
fn docker_gone_mid_reconcile_leaves_every_bridge_it_had_judged() {
    let mut world = World::new(DENY);
    world.docker = Ok(appnet_view());
    world.settle();
    assert!(world.last_plan().contains("-o appnet0"));
    assert_eq!(world.saved_view, Some(appnet_view()), "kept for later");
    // dockerd stops with live-restore (containers and DNAT stay) and firewalld reloads.
    world.docker = Err("Docker is not reachable: connection refused".to_owned());
    world.handle(Event::Trigger(Trigger::DockerStopped));
    world.handle(Event::Trigger(Trigger::FirewalldReloaded));
    world.wake();
    assert_eq!(world.applied.len(), 2);
    assert!(
        world.last_plan().contains("-o appnet0"),
        "a missing answer may add protection, never remove it:\n{}",
        world.last_plan()
    );
    assert!(!world.core.status.docker_connected);
    assert_eq!(world.core.status.ports, appnet_view().ports, "still listed");
    // Docker back, the network gone: now it is no longer judged.
    world.docker = Ok(docker0_view());
    world.handle(Event::Trigger(Trigger::DockerConnected));
    world.settle();
    assert!(!world.last_plan().contains("appnet0"));
    assert_eq!(world.saved_view, Some(docker0_view()));
}

#[test]
fn a_start_while_docker_does_not_answer_judges_what_it_last_published() {
    let mut world = World::with_saved_view(DENY, appnet_view());
    world.docker = Err("Docker is not reachable: connection refused".to_owned());
    world.settle();
    assert!(world.last_plan().contains("-o appnet0"));
    assert_eq!(world.saved_view, None, "nothing new to save");
}
