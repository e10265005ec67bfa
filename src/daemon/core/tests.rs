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
    /// What a look at Docker's rebuild sees.
    rebuild: Observed,
    looks: usize,
    /// The NFLOG groups the shell was told to read, in order.
    listening: Vec<u16>,
    /// The refused-connections tables written, in order.
    refused_saves: Vec<refused::Saved>,
    /// The journal lines for sources refused for the first time.
    journalled: Vec<Hit>,
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
        World::with_saved(config_text, saved, refused::Saved::default())
    }

    /// A start with Docker's view and the refused-connections table as a previous run saved
    /// them.
    fn with_saved(config_text: &str, saved: DockerView, refused: refused::Saved) -> World {
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
                refused,
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
            // A Docker that reports the end of each rebuild the moment it is asked.
            rebuild: Observed {
                reloaded_at: Some(u64::MAX),
                rules: None,
            },
            looks: 0,
            listening: Vec::new(),
            refused_saves: Vec::new(),
            journalled: Vec::new(),
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
                Effect::ListenRefused(group) => {
                    self.listening.push(group);
                    None
                }
                Effect::SaveRefused(saved) => {
                    self.refused_saves.push(saved);
                    None
                }
                Effect::JournalRefused(hit) => {
                    self.journalled.push(hit);
                    None
                }
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
                Effect::LookAtRebuild => {
                    self.looks += 1;
                    Some(Event::RebuildSeen(self.rebuild.clone()))
                }
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
            admin: true,
        },
    );
    world.call(
        2,
        Call::Unexpose {
            id: "runtime-9".to_owned(),
            uid: 0,
            admin: true,
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

fn expose_as(world: &mut World, caller: CallerId, uid: u32, sources: &[&str]) {
    let sources: Vec<String> = sources.iter().map(|source| (*source).to_owned()).collect();
    let exposure = crate::exposures::Request {
        port: "8080/tcp",
        sources: &sources,
        ..Default::default()
    }
    .check()
    .unwrap();
    world.call(
        caller,
        Call::Expose {
            exposure,
            ttl_seconds: 0,
            uid,
        },
    );
}

#[test]
fn the_store_decides_who_owns_an_exposure_even_before_it_is_applied() {
    let mut world = World::started(DENY);
    // Alice's exposure is saved; the reconcile that applies it has not run yet when Bob,
    // looping on the next id, asks about it.
    let exposure = exposure("8080/tcp", "203.0.113.7");
    world.handle(Event::Call(
        1,
        Call::Expose {
            exposure,
            ttl_seconds: 0,
            uid: 1000,
        },
    ));
    assert_eq!(world.core.stored().all().len(), 1);
    world.handle(Event::Call(
        2,
        Call::Describe {
            id: "runtime-1".to_owned(),
        },
    ));
    let Some(Ok(Answer::Exposure(described))) = world.reply(2) else {
        panic!("{:?}", world.reply(2));
    };
    assert!(matches!(
        described.origin,
        Origin::Runtime {
            owner_uid: 1000,
            ..
        }
    ));
    world.handle(Event::Call(
        3,
        Call::Unexpose {
            id: "runtime-1".to_owned(),
            uid: 2000,
            admin: false,
        },
    ));
    assert!(
        matches!(world.reply(3), Some(Err(Error::NotAuthorized(_)))),
        "{:?}",
        world.reply(3)
    );
    world.settle();
    assert_eq!(world.core.stored().all().len(), 1, "Alice's exposure stays");
    assert!(world.last_plan().contains("runtime-1"));
    // Its owner may, and so may an admin or root.
    world.call(
        4,
        Call::Unexpose {
            id: "runtime-1".to_owned(),
            uid: 1000,
            admin: false,
        },
    );
    assert_eq!(world.reply(4), Some(&Ok(Answer::Done)));
    expose_as(&mut world, 5, 1000, &["203.0.113.7"]);
    world.call(
        6,
        Call::Unexpose {
            id: "runtime-2".to_owned(),
            uid: 2000,
            admin: true,
        },
    );
    assert_eq!(world.reply(6), Some(&Ok(Answer::Done)));
    assert!(world.core.stored().all().is_empty());
    // An id the store does not hold is not found, whatever a copy said.
    world.call(
        7,
        Call::Describe {
            id: "runtime-2".to_owned(),
        },
    );
    assert!(matches!(world.reply(7), Some(Err(Error::NotFound(_)))));
}

#[test]
fn past_a_bound_an_exposure_is_refused_naming_the_bound() {
    let mut world = World::started(
        "default = \"deny\"\n[limits]\nexposures_per_uid = 2\nexposures_total = 4\nsources_per_exposure = 2\n",
    );
    let refused = |world: &World, caller| match world.reply(caller) {
        Some(Err(Error::LimitExceeded(message))) => message.clone(),
        other => panic!("caller {caller}: {other:?}"),
    };
    expose_as(&mut world, 1, 1000, &["203.0.113.7"]);
    expose_as(&mut world, 2, 1000, &["203.0.113.8", "203.0.113.9"]);
    expose_as(&mut world, 3, 1000, &["203.0.113.10"]);
    assert!(refused(&world, 3).starts_with("limits.exposures_per_uid: uid 1000 holds 2"));
    expose_as(&mut world, 4, 2000, &["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
    assert!(refused(&world, 4).starts_with("limits.sources_per_exposure: 3 sources"));
    // Root is bounded by the total only.
    expose_as(&mut world, 5, 0, &["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
    expose_as(&mut world, 6, 2000, &["10.0.0.4"]);
    assert_eq!(world.core.stored().all().len(), 4);
    expose_as(&mut world, 7, 0, &["10.0.0.5"]);
    assert!(refused(&world, 7).starts_with("limits.exposures_total: 4 runtime exposures"));
    // A refused call changes nothing and applies nothing.
    let plans = world.applied.len();
    expose_as(&mut world, 8, 2000, &["10.0.0.6"]);
    assert!(matches!(world.reply(8), Some(Err(Error::LimitExceeded(_)))));
    assert_eq!(world.applied.len(), plans);
    assert_eq!(world.core.stored().all().len(), 4);
}

#[test]
fn expired_exposures_do_not_count_against_a_bound() {
    let mut world = World::started("default = \"deny\"\n[limits]\nexposures_per_uid = 1\n");
    world.call(
        1,
        Call::Expose {
            exposure: exposure("8080/tcp", "203.0.113.7"),
            ttl_seconds: 30,
            uid: 1000,
        },
    );
    world.disk_ok = false;
    world.advance(Duration::from_secs(31));
    world.settle();
    assert_eq!(world.core.stored().all().len(), 1, "not written out yet");
    world.disk_ok = true;
    expose_as(&mut world, 2, 1000, &["203.0.113.8"]);
    assert_eq!(
        world.reply(2),
        Some(&Ok(Answer::Id("runtime-2".to_owned())))
    );
}

#[test]
fn signals_name_the_kind_of_change_and_nothing_of_who_or_what() {
    let mut world = World::started(DENY);
    expose_as(&mut world, 1, 1000, &["203.0.113.7"]);
    let reconciled: Vec<&str> = world
        .signals
        .iter()
        .filter_map(|signal| match signal {
            Signal::Reconciled { trigger, .. } => Some(trigger.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(reconciled.last(), Some(&"expose"));
    for signal in &world.signals {
        let text = format!("{signal:?}");
        for secret in ["runtime-1", "1000", "203.0.113.7"] {
            assert!(!text.contains(secret), "{text}");
        }
    }
}

#[test]
fn bridges_and_resets_wait_until_dockers_rebuild_is_seen_to_end_however_long_it_takes() {
    let config = "default = \"deny\"\nverdict = \"reject\"\n[zone]\nbind = \"internal\"\n";
    let mut world = World::started(config);
    assert!(matches!(
        world.applied.last().unwrap().bridges,
        Binding::Bind { .. }
    ));
    // A Docker without ReloadedAt, slow to rebuild: its rules keep changing for 5 s.
    world.rebuild = Observed {
        reloaded_at: None,
        rules: Some("-A FORWARD -o docker0 -j DOCKER\n".to_owned()),
    };
    world.handle(Event::Trigger(Trigger::FirewalldReloaded));
    world.wake();
    let during_reload = world.applied.last().unwrap().clone();
    assert_eq!(
        during_reload.bridges,
        Binding::Leave,
        "not bound while Docker rebuilds"
    );
    assert!(!during_reload.reseat_verdict);
    let plans = world.applied.len();
    for second in 0..20 {
        let rules = format!("-A FORWARD -o docker0 -j DOCKER\n# step {second}\n");
        world.rebuild.rules = Some(rules);
        world.wake();
    }
    assert_eq!(
        world.applied.len(),
        plans,
        "nothing happens while it rebuilds"
    );
    // Done: the jump and the DNAT are back, and a second look sees the same.
    world.rebuild.rules = Some(
        "-A FORWARD -j DOCKER-USER\n-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80\n"
            .to_owned(),
    );
    world.wake();
    assert_eq!(world.applied.len(), plans, "one look is not enough");
    world.wake();
    let after = world.applied.last().unwrap();
    assert_eq!(world.applied.len(), plans + 1);
    assert!(after.reseat_verdict, "the reset goes back in front");
    assert!(
        matches!(after.bridges, Binding::Bind { .. }),
        "and the bridges are bound"
    );
    assert_eq!(world.core.next_wake(&world.clock), None, "no more looks");
}

#[test]
fn a_rebuild_that_never_shows_ends_after_the_bound_and_docker_away_is_none_to_wait_for() {
    let config = "default = \"deny\"\n[zone]\nbind = \"internal\"\n";
    let mut world = World::started(config);
    world.rebuild = Observed::default();
    world.handle(Event::Trigger(Trigger::FirewalldReloaded));
    let reloaded = world.clock.now;
    world.settle();
    while world.core.scheduler.docker_rebuilding() {
        world.wake();
    }
    let waited = world.clock.now - reloaded;
    assert!(waited >= rebuild::MAX_WAIT && waited < rebuild::MAX_WAIT + Duration::from_secs(1));
    assert!(matches!(
        world.applied.last().unwrap().bridges,
        Binding::Bind { .. }
    ));
    // With Docker stopped there is no rebuild to wait for.
    world.handle(Event::Trigger(Trigger::DockerStopped));
    world.settle();
    let looks = world.looks;
    world.handle(Event::Trigger(Trigger::FirewalldReloaded));
    let reloaded = world.clock.now;
    while world.core.scheduler.docker_rebuilding() {
        world.wake();
    }
    assert!(world.clock.now - reloaded <= rebuild::LOOK_EVERY);
    assert_eq!(world.looks, looks, "nobody looked");
}

fn refused_hit(world: &World, port: u16, source: &str, source_port: u16) -> Hit {
    Hit {
        port,
        protocol: Protocol::Tcp,
        source: source.parse().unwrap(),
        source_port,
        would_be: false,
        at: world.unix(),
    }
}

fn listed_refused(world: &mut World, since: u64) -> Vec<refused::Entry> {
    world.call(900, Call::ListRefused { since });
    match world.replies.pop() {
        Some((900, Ok(Answer::Refused(entries)))) => entries,
        other => panic!("ListRefused answered {other:?}"),
    }
}

#[test]
fn refused_connections_are_listed_signalled_at_most_once_a_second_and_journalled_once_per_pair() {
    let mut world = World::started("default = \"deny\"\n[refused]\nnflog_group = 42\n");
    assert_eq!(
        world.listening,
        vec![42],
        "the configured group is read from the start"
    );
    let refused_signals = |world: &World| {
        world
            .signals
            .iter()
            .filter(|signal| **signal == Signal::RefusedChanged)
            .count()
    };
    for n in 0..20 {
        let hit = refused_hit(&world, 8080, "203.0.113.7", 40000 + n);
        world.handle(Event::Refused(vec![hit]));
        world.settle();
        world.advance(Duration::from_millis(20));
    }
    let hits: Vec<Hit> = (0..5)
        .map(|n| refused_hit(&world, 8081, "203.0.113.7", 41000 + n))
        .collect();
    world.handle(Event::Refused(hits));
    world.settle();
    assert_eq!(
        refused_signals(&world),
        1,
        "25 refusals within 0.4 s: one signal"
    );
    world.wake();
    assert_eq!(refused_signals(&world), 2, "the rest a second later");
    let entries = listed_refused(&mut world, 0);
    let counts: Vec<(u16, u64)> = entries
        .iter()
        .map(|entry| (entry.port, entry.count))
        .collect();
    assert_eq!(counts, vec![(8080, 20), (8081, 5)]);
    let journalled: Vec<u16> = world.journalled.iter().map(|hit| hit.port).collect();
    assert_eq!(
        journalled,
        vec![8080, 8081],
        "one line per new (port, source)"
    );
    // Nothing new: no signal, however long.
    let signals = refused_signals(&world);
    world.advance(Duration::from_secs(5));
    world.settle();
    assert_eq!(refused_signals(&world), signals);
}

#[test]
fn a_flood_of_new_sources_is_journalled_up_to_the_bound_a_minute() {
    let mut world = World::started("default = \"deny\"\n");
    let hits: Vec<Hit> = (0..200u16)
        .map(|n| {
            refused_hit(
                &world,
                8080,
                &format!("198.51.100.{}", n % 250 + 1),
                1000 + n,
            )
        })
        .collect();
    world.handle(Event::Refused(hits));
    assert_eq!(world.journalled.len(), REFUSED_JOURNAL_PER_MINUTE as usize);
    world.advance(Duration::from_secs(61));
    let hit = refused_hit(&world, 8080, "192.0.2.1", 5000);
    world.handle(Event::Refused(vec![hit]));
    assert_eq!(
        world.journalled.len(),
        REFUSED_JOURNAL_PER_MINUTE as usize + 1,
        "a new minute, new lines"
    );
    assert_eq!(
        listed_refused(&mut world, 0).len(),
        201,
        "all of them are counted"
    );
}

#[test]
fn the_refused_table_is_written_while_it_changes_kept_at_exit_and_read_back_at_start() {
    let mut world = World::started("default = \"deny\"\n");
    let hit = refused_hit(&world, 8080, "203.0.113.7", 40000);
    world.handle(Event::Refused(vec![hit]));
    world.settle();
    assert!(world.refused_saves.is_empty(), "not at every connection");
    while world.refused_saves.is_empty() {
        world.wake();
    }
    assert!(world.clock.unix() - hit.at <= REFUSED_SAVE_EVERY.as_secs());
    let hit = refused_hit(&world, 8081, "203.0.113.7", 40001);
    world.handle(Event::Refused(vec![hit]));
    world.handle(Event::Shutdown);
    let saved = world.refused_saves.last().unwrap().clone();
    assert_eq!(saved.entries.len(), 2, "the last change is written at exit");
    let mut restarted = World::with_saved("default = \"deny\"\n", DockerView::default(), saved);
    restarted.settle();
    let ports: Vec<u16> = listed_refused(&mut restarted, 0)
        .iter()
        .map(|entry| entry.port)
        .collect();
    assert_eq!(ports, vec![8080, 8081]);
}

#[test]
fn a_new_nflog_group_in_a_reloaded_config_is_read_from_then_on() {
    let mut world = World::started("default = \"deny\"\n");
    assert_eq!(world.listening, vec![2717]);
    world.handle(Event::ConfigLoaded {
        by: None,
        result: Ok(config("default = \"audit\"\n[refused]\nnflog_group = 7\n")),
    });
    world.settle();
    assert_eq!(world.listening, vec![2717, 7]);
    world.handle(Event::ConfigLoaded {
        by: None,
        result: Ok(config("default = \"deny\"\n[refused]\nnflog_group = 7\n")),
    });
    world.settle();
    assert_eq!(
        world.listening,
        vec![2717, 7],
        "the same group: nothing to do"
    );
}
