use super::*;

fn scratch(name: &str) -> StateDir {
    let dir =
        std::env::temp_dir().join(format!("dockgate-exposures-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    StateDir::new(dir)
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| (*item).to_owned()).collect()
}

fn good() -> (String, Vec<String>) {
    ("8080/tcp".to_owned(), strings(&["203.0.113.7"]))
}

fn good_exposure() -> Exposure {
    let (port, sources) = good();
    Request {
        port: &port,
        sources: &sources,
        ..Request::default()
    }
    .check()
    .unwrap()
}

/// The field a bad request is refused for.
fn refused(request: Request<'_>) -> String {
    match request.check() {
        Ok(exposure) => panic!("accepted {request:?} as {exposure:?}"),
        Err(error) => error.field,
    }
}

#[test]
fn a_good_request_becomes_an_exposure() {
    let sources = strings(&[
        "192.168.1.0/24",
        "203.0.113.7",
        "10.0.0.1-10.0.0.9",
        "fd00::/8",
    ]);
    let exposure = Request {
        port: "8000-8010/udp",
        sources: &sources,
        ttl_seconds: 3600,
        container: Some("web-1"),
        comment: Some("for the demo"),
    }
    .check()
    .unwrap();
    assert_eq!(exposure.port.to_string(), "8000-8010/udp");
    assert_eq!(exposure.from.len(), 4);
    assert_eq!(exposure.container.as_deref(), Some("web-1"));
}

#[test]
fn every_bad_field_is_named() {
    let (port, sources) = good();
    let request = || Request {
        port: &port,
        sources: &sources,
        ..Request::default()
    };
    for bad_port in [
        "",
        "8080",
        "0/tcp",
        "65536/tcp",
        "80/icmp",
        "90-80/tcp",
        "+80/tcp",
        "80/tcp -j ACCEPT",
        "80/tcp;reboot",
        "-80/tcp",
    ] {
        assert_eq!(
            refused(Request {
                port: bad_port,
                ..request()
            }),
            "port",
            "{bad_port:?}"
        );
    }
    let huge = "1".repeat(1 << 20);
    assert_eq!(
        refused(Request {
            port: &huge,
            ..request()
        }),
        "port"
    );

    assert_eq!(
        refused(Request {
            sources: &[],
            ..request()
        }),
        "sources"
    );
    let many: Vec<String> = (0..10_000)
        .map(|n| format!("10.{}.{}.1", n / 256, n % 256))
        .collect();
    assert_eq!(
        refused(Request {
            sources: &many,
            ..request()
        }),
        "sources"
    );
    for bad_source in [
        "",
        "10.0.0.300",
        "10.0.0.1/33",
        "10.0.0.1/24",
        "10.0.0.9-10.0.0.1",
        "10.0.0.1-fd00::1",
        "example.com",
        "-s 0.0.0.0/0",
        "! 10.0.0.1",
        "10.0.0.1 -j ACCEPT",
        "any,10.0.0.1",
    ] {
        let bad = strings(&["203.0.113.7", bad_source]);
        assert_eq!(
            refused(Request {
                sources: &bad,
                ..request()
            }),
            "sources[1]",
            "{bad_source:?}"
        );
    }
    let long = strings(&[&"1".repeat(1 << 20)]);
    assert_eq!(
        refused(Request {
            sources: &long,
            ..request()
        }),
        "sources[0]"
    );

    assert_eq!(
        refused(Request {
            ttl_seconds: MAX_TTL_SECONDS + 1,
            ..request()
        }),
        "ttl_seconds"
    );
    for bad_container in ["", "-web", "web;rm", "a", "web name", &"w".repeat(300)] {
        assert_eq!(
            refused(Request {
                container: Some(bad_container),
                ..request()
            }),
            "container",
            "{bad_container:?}"
        );
    }
    for bad_comment in ["quote \" inside", "new\nline", &"c".repeat(1 << 20)] {
        assert_eq!(
            refused(Request {
                comment: Some(bad_comment),
                ..request()
            }),
            "comment"
        );
    }
    // 30 days exactly is allowed.
    assert!(
        Request {
            ttl_seconds: MAX_TTL_SECONDS,
            ..request()
        }
        .check()
        .is_ok()
    );
}

#[test]
fn exposures_persist_with_ids_that_are_never_reused() {
    let state = scratch("persist");
    let exposure = good_exposure();
    let store = Stored::load(&state).unwrap();
    let (store, first) = store.with(exposure.clone(), 0, 1000, 100);
    let (store, second) = store.with(exposure.clone(), 60, 0, 100);
    assert_eq!(
        (first.as_str(), second.as_str()),
        ("runtime-1", "runtime-2")
    );
    let (store, removed) = store.without(&second).unwrap();
    assert_eq!(removed.id, second);
    assert!(matches!(
        store.without(&second),
        Err(StoreError::NotFound(_))
    ));
    store.save(&state).unwrap();

    // A restart: the same exposures, and the next id is new.
    let again = Stored::load(&state).unwrap();
    assert_eq!(again.all(), store.all());
    assert_eq!(again.all()[0].owner_uid, 1000);
    assert_eq!(again.all()[0].exposure(), exposure);
    assert_eq!(again.with(exposure, 0, 0, 100).1, "runtime-3");
    std::fs::remove_dir_all(state.path()).unwrap();
}

#[test]
fn expiry_applies_also_to_time_that_passed_while_down() {
    let state = scratch("expiry");
    let exposure = good_exposure();
    let store = Stored::default();
    let (store, short) = store.with(exposure.clone(), 60, 0, 1_000);
    let (store, long) = store.with(exposure.clone(), 3600, 0, 1_000);
    let (store, forever) = store.with(exposure, 0, 0, 1_000);
    assert_eq!(store.next_expiry(1_000), Some(1_060));
    assert_eq!(store.next_expiry(1_060), Some(4_600));
    assert!(store.expire(1_059).1.is_empty());
    store.save(&state).unwrap();

    // "Down" until long after both expiries: loading and expiring takes both out.
    let (store, expired) = Stored::load(&state).unwrap().expire(10_000);
    let expired: Vec<String> = expired.into_iter().map(|exposure| exposure.id).collect();
    assert_eq!(expired, [short, long]);
    assert_eq!(store.next_expiry(10_000), None);
    let ids: Vec<&str> = store
        .all()
        .iter()
        .map(|exposure| exposure.id.as_str())
        .collect();
    assert_eq!(ids, [forever]);
    std::fs::remove_dir_all(state.path()).unwrap();
}

#[test]
fn a_state_file_with_what_a_caller_could_not_send_is_refused() {
    let state = scratch("tampered");
    std::fs::create_dir_all(state.path()).unwrap();
    for bad in [
        r#"{"last_id":1,"exposures":[{"id":"runtime-1","port":"80/tcp","from":[],"owner_uid":0,"expires_at":0}]}"#,
        r#"{"last_id":1,"exposures":[{"id":"runtime-1","port":"80/tcp","from":["-j ACCEPT"],"owner_uid":0,"expires_at":0}]}"#,
        r#"{"last_id":1,"exposures":[{"id":"runtime-1","port":"80/tcp","from":["any"],"container":"-x","owner_uid":0,"expires_at":0}]}"#,
        r#"{"last_id":1,"exposures":[],"extra":1}"#,
        // An end no kernel rule can carry (the time match keeps 32-bit dates); planning it
        // panicked, at every start of dockgated.
        r#"{"last_id":1,"exposures":[{"id":"runtime-1","port":"80/tcp","from":["any"],"owner_uid":0,"expires_at":4294967296}]}"#,
        r#"{"last_id":1,"exposures":[{"id":"runtime-1","port":"80/tcp","from":["any"],"owner_uid":0,"expires_at":18446744073709551615}]}"#,
    ] {
        std::fs::write(state.path().join(FILE), bad).unwrap();
        assert!(Stored::load(&state).is_err(), "{bad}");
    }
    // The latest end a rule can carry is taken, and planned.
    let latest = r#"{"last_id":1,"exposures":[{"id":"runtime-1","port":"80/tcp","from":["any"],"owner_uid":0,"expires_at":4294967295}]}"#;
    std::fs::write(state.path().join(FILE), latest).unwrap();
    let stored = Stored::load(&state).unwrap();
    assert_eq!(
        crate::plan::datestop(stored.all()[0].expires_at),
        "2106-02-07T06:28:14"
    );
    std::fs::remove_dir_all(state.path()).unwrap();
}
