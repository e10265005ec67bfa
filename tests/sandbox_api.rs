//! dockgate's D-Bus API over the real system bus with real polkitd: calls, their answers,
//! polkit's decisions, signals, and real packets for what the calls change.
#![cfg(feature = "sandbox-tests")]

mod common;

use std::time::{Duration, Instant};

use common::*;

/// Expose through dockgate's own D-Bus client, as root; the error as "name: message".
fn expose_with_client(port: &str, sources: &[String]) -> Result<String, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let bus = zbus::Connection::system().await.unwrap();
        let api = dockgate::api::Dockgate1Proxy::new(&bus).await.unwrap();
        let sources: Vec<&str> = sources.iter().map(String::as_str).collect();
        api.expose(port, &sources, 0, std::collections::HashMap::new())
            .await
            .map_err(|error| match error {
                zbus::Error::MethodError(name, message, _) => {
                    format!("{name}: {}", message.unwrap_or_default())
                }
                other => other.to_string(),
            })
    })
}

/// Issue 5 over the real system bus with real polkitd: root exposes and unexposes a port and a
/// client sees it at once; config exposures are read-only; bad arguments change nothing; an
/// unprivileged caller is refused until a polkit rule lets it read, then expose.
#[test]
fn the_dbus_api_exposes_with_real_packets_and_asks_polkit_about_everyone_but_root() {
    in_sandbox();
    add_client_address(1, "10.99.1.50");
    let _web = Container::httpd("api-web", "-p 8080:80");
    let service = Service::start(
        "api",
        "trusted = [\"10.99.1.50\"]\n[[expose]]\nport = \"9999/tcp\"\nfrom = [\"any\"]\n",
    );
    service.wait_for_api();
    service.wait_until_settled();
    service.allowed_and_denied("start");

    // Expose returns once the rule is in the kernel: the very next probe gets through.
    let started = Instant::now();
    let (ok, stdout, stderr) = busctl("root", "Expose sasta{sv} 8080/tcp 1 10.99.1.2 0 0");
    let latency = started.elapsed();
    assert!(ok, "Expose: {stderr}\n{}", service.log());
    assert_eq!(stdout.trim(), "s \"runtime-1\"");
    assert_eq!(probe(HOST_V4, 8080), "open", "right after Expose returned");
    eprintln!(
        "{}: one Expose through busctl (process start included): {} ms",
        stack(),
        latency.as_millis()
    );
    assert_eq!(exposure_ids("root"), ["config-1", "runtime-1"]);

    // Bad arguments are refused with the field named, and change nothing: not the list, not
    // the state file, not a rule in the kernel.
    let state_file = service.dockgate.state_dir().join("exposures.json");
    let state_before = std::fs::read(&state_file).unwrap();
    let rules_before = [kernel_rules("iptables"), kernel_rules("ip6tables")];
    for (arguments, field) in [
        ("Expose sasta{sv} 80/icmp 1 10.99.1.2 0 0", "port"),
        ("Expose sasta{sv} 8080/tcp 0 0 0", "sources"),
        (
            "Expose sasta{sv} 8080/tcp 1 '10.0.0.1 -j ACCEPT' 0 0",
            "sources[0]",
        ),
        ("Expose sasta{sv} 8080/tcp 1 any 99999999 0", "ttl_seconds"),
        (
            "Expose sasta{sv} 8080/tcp 1 any 0 1 container u 7",
            "options.container",
        ),
        ("Expose sasta{sv} 8080/tcp 1 any 0 1 color s red", "options"),
        ("Expose sasta{sv} 70000/tcp 1 any 0 0", "port"),
        ("Expose sasta{sv} 9000-8000/tcp 1 any 0 0", "port"),
        ("Expose sasta{sv} 8080/tcp 1 300.1.2.3 0 0", "sources[0]"),
        (
            "Expose sasta{sv} 8080/tcp 2 10.0.0.1 10.0.0.9-10.0.0.1 0 0",
            "sources[1]",
        ),
        ("Expose sasta{sv} 8080/tcp 1 10.0.0.0/33 0 0", "sources[0]"),
    ] {
        let (ok, _, stderr) = busctl("root", arguments);
        assert!(!ok, "{arguments} was accepted");
        assert!(stderr.contains(field), "{arguments}: {stderr}");
    }
    // Too big for a command line (one argument may be 128 KiB): through dockgate's own client.
    let huge = "1".repeat(1 << 20);
    let many: Vec<String> = (0..10_000)
        .map(|n| format!("10.{}.{}.1", n / 256, n % 256))
        .collect();
    for (port, sources, field) in [
        ("8080/tcp", vec![huge.clone()], "sources[0]"),
        (huge.as_str(), vec!["any".to_owned()], "port"),
        ("8080/tcp", many, "sources"),
    ] {
        let error = expose_with_client(port, &sources).expect_err("accepted");
        assert!(
            error.contains("org.dockgate.Dockgate1.Error.InvalidArgument") && error.contains(field),
            "{field}: {}",
            &error[..error.len().min(300)]
        );
    }
    let wrong_signature = dbus_error("root", "Expose", "string:80/tcp");
    assert!(
        wrong_signature.contains("org.freedesktop.DBus.Error"),
        "{wrong_signature}"
    );
    assert_eq!(exposure_ids("root"), ["config-1", "runtime-1"]);
    assert_eq!(std::fs::read(&state_file).unwrap(), state_before);
    assert_eq!(
        [kernel_rules("iptables"), kernel_rules("ip6tables")],
        rules_before
    );
    assert!(
        dbus_error("root", "Unexpose", "string:config-1")
            .contains("org.dockgate.Dockgate1.Error.ReadOnly")
    );

    // Unexpose closes it again; a second time it is not found.
    let (ok, _, stderr) = busctl("root", "Unexpose s runtime-1");
    assert!(ok, "Unexpose: {stderr}");
    assert_eq!(
        probe(HOST_V4, 8080),
        "dropped",
        "right after Unexpose returned"
    );
    assert!(
        dbus_error("root", "Unexpose", "string:runtime-1")
            .contains("org.dockgate.Dockgate1.Error.NotFound")
    );

    // An unprivileged caller: polkit says no (no session, auth_admin) to everything, and
    // Permissions says so without trying.
    assert_eq!(permissions("root"), "read=yes expose=yes admin=yes");
    assert_eq!(permissions("nobody"), "read=auth expose=auth admin=auth");
    let refused = dbus_error("nobody", "ListExposures", "");
    assert!(
        refused.contains("org.dockgate.Dockgate1.Error.NotAuthorized")
            && refused.contains("org.dockgate.Dockgate1.read"),
        "{refused}"
    );
    let (ok, _, stderr) = busctl("nobody", "Expose sasta{sv} 8080/tcp 1 10.99.1.2 0 0");
    assert!(
        !ok && stderr.contains("org.dockgate.Dockgate1.expose"),
        "{stderr}"
    );

    // A rule lets nobody read: it can list, but still not expose.
    let rules = "/etc/polkit-1/rules.d/50-dockgate-test.rules";
    std::fs::write(
        rules,
        "polkit.addRule(function(action, subject) {\n\
           if (action.id == \"org.dockgate.Dockgate1.read\" && subject.user == \"nobody\")\n\
             return polkit.Result.YES;\n\
         });\n",
    )
    .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || busctl(
            "nobody",
            "ListExposures"
        )
        .0),
        "polkitd did not pick up the read rule"
    );
    assert_eq!(exposure_ids("nobody"), ["config-1"]);
    assert_eq!(permissions("nobody"), "read=yes expose=auth admin=auth");
    let (ok, _, _) = busctl("nobody", "Expose sasta{sv} 8080/tcp 1 10.99.1.2 0 0");
    assert!(!ok, "a read-only caller exposed a port");

    // The example rules file as shipped: nobody may expose once it is in group dockgate.
    std::fs::write(
        rules,
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/polkit/50-dockgate.rules.example"
        ))
        .unwrap(),
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let (ok, _, _) = busctl("nobody", "Expose sasta{sv} 8080/tcp 1 10.99.1.2 0 0");
    assert!(!ok, "nobody exposed before joining group dockgate");
    // The sandbox's /etc/group is a private copy.
    sh("grep -q '^dockgate:' /etc/group || echo 'dockgate:x:64999:nobody' >> /etc/group");
    assert!(
        eventually(Duration::from_secs(10), || {
            let (ok, stdout, _) = busctl("nobody", "Expose sasta{sv} 8080/tcp 1 10.99.1.2 0 0");
            ok && stdout.contains("runtime-")
        }),
        "nobody could not expose with the example rule after joining group dockgate:\n{}",
        service.log()
    );
    assert_eq!(permissions("nobody"), "read=yes expose=yes admin=auth");
    let answer = probe(HOST_V4, 8080);
    assert_eq!(
        answer,
        "open",
        "nobody's exposure is in force\n{}",
        diagnostics(&service)
    );
    assert!(
        service
            .log()
            .lines()
            .any(|line| line.contains("uid=65534 pid=")
                && line.contains("method=\"Expose\"")
                && line.contains("8080/tcp")),
        "the call is logged with the caller's uid, pid and arguments:\n{}",
        service.log()
    );
    std::fs::remove_file(rules).unwrap();
}

/// The `org.dockgate.Dockgate1` interface element of an introspection document, one tag per
/// line, so that layout does not count.
fn interface_element(xml: &str) -> Vec<String> {
    let start = xml
        .find("<interface name=\"org.dockgate.Dockgate1\">")
        .expect("the interface is in the document");
    let end = start + xml[start..].find("</interface>").expect("closed") + "</interface>".len();
    xml[start..end]
        .split('<')
        .map(str::trim)
        .filter(|part| !part.is_empty() && !part.starts_with("!--"))
        .map(|part| format!("<{part}"))
        .collect()
}

#[test]
fn the_interface_xml_file_is_what_dockgated_serves() {
    in_sandbox();
    let service = Service::start("xml", "");
    service.wait_for_api();
    let live = sh(
        "busctl --system introspect --xml-interface org.dockgate.Dockgate1 /org/dockgate/Dockgate1",
    );
    let file = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/dbus/org.dockgate.Dockgate1.xml"
    ))
    .unwrap();
    assert_eq!(interface_element(&file), interface_element(&live), "{live}");
}

/// The signals on dockgate's object path, as dbus-monitor prints them; stopped when dropped.
struct SignalMonitor {
    child: std::process::Child,
    output: std::path::PathBuf,
}

impl SignalMonitor {
    /// Returns once the monitor sees signals: it waits for one it emits itself.
    fn start(name: &str) -> Self {
        let output = std::env::temp_dir().join(format!("dockgate-test-{}-{name}.monitor", stack()));
        let child = std::process::Command::new("dbus-monitor")
            .args(["--system", "type='signal',path='/org/dockgate/Dockgate1'"])
            .stdout(std::fs::File::create(&output).unwrap())
            .spawn()
            .unwrap();
        let monitor = SignalMonitor { child, output };
        assert!(
            eventually(Duration::from_secs(10), || {
                sh("busctl --system emit /org/dockgate/Dockgate1 org.dockgate.Test Ready");
                monitor.text().contains("member=Ready")
            }),
            "dbus-monitor saw nothing"
        );
        monitor
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.output).unwrap_or_default()
    }

    /// Each signal seen: its member and its body, in order.
    fn signals(&self) -> Vec<(String, String)> {
        self.text()
            .split("\nsignal ")
            .filter_map(|message| {
                let (header, body) = message.split_once('\n').unwrap_or((message, ""));
                let member = header.split("member=").nth(1)?;
                Some((member.trim().to_owned(), body.to_owned()))
            })
            .collect()
    }

    /// The names of the properties announced in PropertiesChanged signals.
    fn changed_properties(signals: &[(String, String)]) -> Vec<String> {
        signals
            .iter()
            .filter(|(member, _)| member == "PropertiesChanged")
            .flat_map(|(_, body)| {
                body.split("dict entry(")
                    .skip(1)
                    .filter_map(|entry| entry.split('"').nth(1).map(str::to_owned))
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

impl Drop for SignalMonitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.output);
    }
}

/// What a GUI that listens sees: ExposuresChanged and Reconciled for a change, and
/// PropertiesChanged for exactly the properties whose value changed.
#[test]
fn changes_are_announced_with_signals_and_only_changed_properties() {
    in_sandbox();
    let _web = Container::httpd("sig-web", "-p 8080:80");
    let service = Service::start("signals", "");
    service.wait_for_api();
    service.wait_until_settled();
    let monitor = SignalMonitor::start("signals");

    let (ok, _, stderr) = busctl("root", "Expose sasta{sv} 8080/tcp 1 10.99.1.2 0 0");
    assert!(ok, "Expose: {stderr}");
    // Read as soon as Expose answered: RuleCount already counts the new rule.
    let rules = sh(&format!("busctl --system get-property {API} RuleCount"));
    let rules = rules.trim().trim_start_matches("u ").to_owned();
    assert!(
        eventually(Duration::from_secs(5), || {
            let signals = monitor.signals();
            signals
                .iter()
                .any(|(member, _)| member == "ExposuresChanged")
                && SignalMonitor::changed_properties(&signals).contains(&"RuleCount".to_owned())
        }),
        "{}",
        monitor.text()
    );
    let signals = monitor.signals();
    let (_, reconciled) = signals
        .iter()
        .find(|(member, _)| member == "Reconciled")
        .unwrap_or_else(|| panic!("no Reconciled:\n{}", monitor.text()));
    assert!(
        // The kind of change only (SPEC §4): no id, uid or address reaches every listener.
        reconciled.contains("string \"expose\"")
            && reconciled.contains(&format!("uint32 {rules}"))
            && reconciled.contains("uint64 "),
        "Reconciled(trigger, rules, duration_us): {reconciled}"
    );
    let mut changed = SignalMonitor::changed_properties(&signals);
    changed.sort();
    assert_eq!(
        changed,
        ["LastReconcile", "RuleCount"],
        "{}",
        monitor.text()
    );

    // A new config with another default: Default is announced, with its new value.
    let seen = signals.len();
    std::fs::write(
        service.dockgate.dir.join("dockgate.toml"),
        "default = \"allow\"\n",
    )
    .unwrap();
    let (ok, _, stderr) = dockgatectl("reload");
    assert!(ok, "{stderr}");
    assert!(
        eventually(Duration::from_secs(5), || monitor.signals()[seen..]
            .iter()
            .any(|(member, body)| member == "PropertiesChanged"
                && body.contains("string \"Default\"")
                && body.contains("string \"allow\""))),
        "{}",
        monitor.text()
    );

    // A container that starts changes no rule, but it is a new published port: PortsChanged,
    // and ListPorts has it by then.
    let seen = monitor.signals().len();
    let _db = Container::httpd("sig-db", "-p 8081:80");
    assert!(
        eventually(Duration::from_secs(5), || monitor.signals()[seen..]
            .iter()
            .any(|(member, _)| member == "PortsChanged")),
        "no PortsChanged for a new container:\n{}",
        monitor.text()
    );
    let (ok, ports, stderr) = busctl("root", "ListPorts --json=short");
    assert!(ok && ports.contains("sig-db"), "{stderr}{ports}");
}

/// Issue 5: 50 callers at once, each exposing its own port, end with all 50 in place, each rule
/// once, and nothing left for a re-apply to do.
#[test]
fn fifty_parallel_exposes_all_land_once() {
    in_sandbox();
    let service = Service::start("parallel", "trusted = [\"10.99.1.50\"]\n");
    service.wait_for_api();
    service.wait_for_reconcile_after(0);
    let (ok, _, stderr) = try_sh(&format!(
        "for i in $(seq 1 50); do \
           busctl --system call {API} Expose sasta{{sv}} $((20000+i))/tcp 1 203.0.113.$i 0 0 \
             >/dev/null || echo failed $i >&2 & \
         done; wait"
    ));
    assert!(ok && stderr.is_empty(), "{stderr}\n{}", service.log());
    let ids = exposure_ids("root");
    assert_eq!(ids.len(), 50, "{ids:?}");
    for family in ["iptables", "ip6tables"] {
        let rules: Vec<String> = sh(&format!("{family}-save -t mangle"))
            .lines()
            .filter(|line| line.contains("dockgate:expose:runtime-"))
            .map(str::to_owned)
            .collect();
        let unique: std::collections::BTreeSet<&String> = rules.iter().collect();
        assert_eq!(rules.len(), unique.len(), "{family}: duplicate rules");
        if family == "iptables" {
            assert_eq!(rules.len(), 50, "{family}: one rule per exposure");
        }
    }
    assert_eq!(service.dockgate.reapply_writes(), 0);
}

/// Issue 5: a 60-second exposure made over the API opens the port and closes it when it
/// expires, and not before.
#[test]
fn a_sixty_second_exposure_opens_and_closes_on_time() {
    in_sandbox();
    let _web = Container::httpd("ttl-web", "-p 8080:80");
    let service = Service::start("ttl", "trusted = [\"10.99.1.50\"]\n");
    assert!(
        eventually(Duration::from_secs(20), || dockgatectl("status").0),
        "{}",
        service.log()
    );
    service.wait_until_settled();
    assert_eq!(
        probe_until(HOST_V4, 8080, "dropped", Duration::from_secs(10)),
        "dropped"
    );
    let (ok, _, stderr) = dockgatectl("expose 8080/tcp --from 10.99.1.2 --for 60s");
    let exposed = Instant::now();
    assert!(ok, "{stderr}");
    assert_eq!(probe(HOST_V4, 8080), "open", "right after expose");
    while probe(HOST_V4, 8080) == "open" {
        assert!(
            exposed.elapsed() < Duration::from_secs(75),
            "still open after 75 s:\n{}",
            service.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let closed_after = exposed.elapsed();
    eprintln!(
        "{}: a 60 s exposure closed after {:.1} s",
        stack(),
        closed_after.as_secs_f64()
    );
    // Expiry has one-second resolution: it may close up to a second early.
    assert!(
        closed_after >= Duration::from_secs(59),
        "closed after {closed_after:?}"
    );
    assert_eq!(dockgatectl("list --json").1.matches("runtime-").count(), 0);
}

/// The id busctl printed for an Expose (`s "runtime-3"`).
fn exposed_id(stdout: &str) -> String {
    stdout
        .trim()
        .trim_start_matches("s ")
        .trim_matches('"')
        .to_owned()
}

/// Ownership (SPEC §4): an exposure belongs to the uid that made it. Two users allowed to
/// expose cannot remove each other's; each removes their own; an admin removes anyone's. And
/// the shipped detail rule (polkit/60-dockgate-web-team.rules.example) decides by the call's
/// port and TTL, through polkitd.
#[test]
fn exposures_belong_to_their_owners_and_polkit_rules_see_what_a_call_asks_for() {
    in_sandbox();
    let _web = Container::httpd("own-web", "-p 8080:80");
    let service = Service::start("owners", "");
    service.wait_for_api();
    service.wait_until_settled();
    let alice = TestUser::add("dgo-alice", 64101, &["dockgate"]);
    let bob = TestUser::add("dgo-bob", 64102, &["dockgate"]);
    let admin = TestUser::add("dgo-admin", 64103, &[]);
    let _rules = PolkitRules::example("50-dockgate.rules.example");
    let _admin_rule = PolkitRules::install(
        "55-dockgate-test-admin.rules",
        "polkit.addRule(function(action, subject) {\n\
           if (action.id.indexOf(\"org.dockgate.Dockgate1.\") == 0 && subject.user == \"dgo-admin\")\n\
             return polkit.Result.YES;\n\
         });\n",
    );
    assert!(
        eventually(Duration::from_secs(10), || permissions(&admin.name)
            == "read=yes expose=yes admin=yes"),
        "polkitd did not pick up the rules"
    );
    assert_eq!(permissions(&alice.name), "read=yes expose=yes admin=auth");

    let (ok, stdout, stderr) = busctl(&alice.name, "Expose sasta{sv} 8080/tcp 1 10.99.1.2 0 0");
    assert!(ok, "alice exposes: {stderr}");
    let alices = exposed_id(&stdout);
    let (ok, stdout, stderr) = busctl(&bob.name, "Expose sasta{sv} 8081/tcp 1 10.99.1.2 0 0");
    assert!(ok, "bob exposes: {stderr}");
    let bobs = exposed_id(&stdout);
    assert_eq!(probe(HOST_V4, 8080), "open");
    let (_, listed, _) = busctl("root", "ListExposures --json=short");
    assert!(
        listed.contains("\"owner\":{\"type\":\"s\",\"data\":\"dgo-alice\"}")
            && listed.contains("\"owner_uid\":{\"type\":\"u\",\"data\":64101}"),
        "ListExposures names the owner: {listed}"
    );

    // Neither removes the other's: refused with the reason, and nothing changes.
    let state = service.dockgate.state_dir().join("exposures.json");
    let before = std::fs::read(&state).unwrap();
    for (user, id, owner) in [(&bob, &alices, &alice), (&alice, &bobs, &bob)] {
        let refused = dbus_error(&user.name, "Unexpose", &format!("string:{id}"));
        assert!(
            refused.contains("org.dockgate.Dockgate1.Error.NotAuthorized")
                && refused.contains(&format!("belongs to uid {}", owner.uid))
                && refused.contains("org.dockgate.Dockgate1.admin"),
            "{} removing {id}: {refused}",
            user.name
        );
    }
    assert_eq!(std::fs::read(&state).unwrap(), before);
    assert_eq!(
        probe(HOST_V4, 8080),
        "open",
        "alice's exposure is still in force"
    );

    // Each removes their own; the admin removes anyone's.
    let (ok, _, stderr) = busctl(&alice.name, &format!("Unexpose s {alices}"));
    assert!(ok, "alice removes her own: {stderr}");
    assert_eq!(probe(HOST_V4, 8080), "dropped");
    let (ok, _, stderr) = busctl(&admin.name, &format!("Unexpose s {bobs}"));
    assert!(ok, "the admin removes bob's: {stderr}");
    assert_eq!(exposure_ids("root"), Vec::<String>::new());
    let (ok, stdout, _) = busctl(&bob.name, "Expose sasta{sv} 8081/tcp 1 10.99.1.2 0 0");
    assert!(ok);
    let (ok, _, stderr) = busctl(&bob.name, &format!("Unexpose s {}", exposed_id(&stdout)));
    assert!(ok, "bob removes his own: {stderr}");
    drop(bob);
    drop(alice);

    // The web team's rule: 443/tcp and 8080/tcp, for at most 8 hours; nothing else.
    let web = TestUser::add("dgo-web", 64104, &["webteam"]);
    let _team = PolkitRules::example("60-dockgate-web-team.rules.example");
    let _read = PolkitRules::install(
        "55-dockgate-test-read.rules",
        "polkit.addRule(function(action, subject) {\n\
           if (action.id == \"org.dockgate.Dockgate1.read\" && subject.isInGroup(\"webteam\"))\n\
             return polkit.Result.YES;\n\
         });\n",
    );
    assert!(
        eventually(Duration::from_secs(10), || permissions(&web.name)
            == "read=yes expose=yes admin=auth"),
        "polkitd did not pick up the web team's rule: {}",
        permissions(&web.name)
    );
    let expose = |port: &str, ttl: u64| {
        busctl(
            &web.name,
            &format!("Expose sasta{{sv}} {port} 1 10.99.1.2 {ttl} 0"),
        )
    };
    let (ok, stdout, stderr) = expose("8080/tcp", 3600);
    assert!(ok, "8080/tcp for an hour: {stderr}\n{}", service.log());
    let team_exposure = exposed_id(&stdout);
    assert_eq!(probe(HOST_V4, 8080), "open");
    let (ok, _, stderr) = expose("443/tcp", 8 * 3600);
    assert!(ok, "443/tcp for 8 hours: {stderr}");
    for (port, ttl, why) in [
        ("443/tcp", 8 * 3600 + 1, "longer than 8 hours"),
        ("443/tcp", 0, "until removed"),
        ("9999/tcp", 60, "another port"),
        ("8080/udp", 60, "another protocol"),
    ] {
        let (ok, _, stderr) = expose(port, ttl);
        assert!(
            !ok && stderr.contains("org.dockgate.Dockgate1.expose"),
            "{port} for {ttl} s ({why}) was allowed: {stderr}"
        );
    }
    let (ok, _, stderr) = busctl(&web.name, &format!("Unexpose s {team_exposure}"));
    assert!(ok, "the team closes its own: {stderr}");
    assert_eq!(probe(HOST_V4, 8080), "dropped");
    // Every call is logged with the details polkit was given.
    assert!(
        service
            .log()
            .lines()
            .any(|line| line.contains("uid=64104") && line.contains("method=\"Expose\"")),
        "{}",
        service.log()
    );
}
