//! One truth (issue 12): for every client and published port, what Explain, ListPorts,
//! `dockgatectl ports` and `dockgated inspect` say is what real packets do, at start, after a
//! firewalld reload and after a dockerd restart, with `drop` and with `reject`.
#![cfg(feature = "sandbox-tests")]

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// A published port as a client reaches it.
struct Case {
    what: &'static str,
    /// The host address clients connect to ("gateway": each client's own, 10.99.N.1).
    host: &'static str,
    port: u16,
    udp: bool,
}

const CASES: [Case; 7] = [
    Case {
        what: "trusted-only",
        host: "gateway",
        port: 8081,
        udp: false,
    },
    Case {
        what: "exposed to one source",
        host: "gateway",
        port: 8082,
        udp: false,
    },
    Case {
        what: "container-bound exposure",
        host: "gateway",
        port: 8083,
        udp: false,
    },
    Case {
        what: "host-IP-bound",
        host: "10.99.2.1",
        port: 8084,
        udp: false,
    },
    Case {
        what: "loopback-only",
        host: "gateway",
        port: 8085,
        udp: false,
    },
    Case {
        what: "in a port range",
        host: "gateway",
        port: 8091,
        udp: false,
    },
    Case {
        what: "UDP",
        host: "gateway",
        port: 9000,
        udp: true,
    },
];

/// client3's network is trusted; client1 and client2 are exposed to some ports each. The
/// second container-bound exposure names a container that does not run: not in force.
const CONFIG: &str = r#"
trusted = ["10.99.3.0/24"]
[[expose]]
port = "8082/tcp"
from = ["10.99.1.2"]
[[expose]]
port = "8083/tcp"
from = ["10.99.2.2"]
container = "ans-bound"
[[expose]]
port = "8083/tcp"
from = ["10.99.1.2"]
container = "ans-missing"
[[expose]]
port = "8084/tcp"
from = ["10.99.1.2"]
[[expose]]
port = "8085/tcp"
from = ["any"]
[[expose]]
port = "8090-8091/tcp"
from = ["10.99.2.2"]
[[expose]]
port = "9000/udp"
from = ["10.99.1.2"]
"#;

fn client_address(client: u8) -> String {
    format!("10.99.{client}.2")
}

fn protocol(case: &Case) -> &'static str {
    if case.udp { "udp" } else { "tcp" }
}

/// Whether a source is let in according to a port's listed state and sources.
fn listed_allows(state: &str, sources: &[String], address: &str) -> bool {
    let address: std::net::IpAddr = address.parse().unwrap();
    state == "open"
        || sources.iter().any(|source| {
            let source = source.parse::<dockgate::config::Source>().unwrap();
            dockgate::policy::source_contains(&source, address)
        })
}

/// The entry of a port list (ListPorts, `dockgatectl ports --json`, inspect's ports) for a
/// case: its IPv4 row.
fn row<'a>(rows: &'a [Value], case: &Case, get: impl Fn(&Value, &str) -> Value) -> &'a Value {
    rows.iter()
        .find(|row| {
            get(row, "host_port") == case.port
                && get(row, "protocol") == protocol(case)
                && get(row, "host_ip")
                    .as_str()
                    .is_some_and(|ip| !ip.contains(':'))
        })
        .unwrap_or_else(|| panic!("no IPv4 row for {} in {rows:#?}", case.port))
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// What the packets did for one client and case, and whether each answer lets it in.
struct Answer {
    client: u8,
    case: usize,
    probed: String,
    explained: bool,
    reason: String,
    by_list: bool,
    by_ctl: bool,
    /// None while inspect sees firewalld's rules differ from the plan (settling).
    by_inspect: Option<bool>,
}

/// Every answer for every (client, case).
struct Observed {
    answers: Vec<Answer>,
}

impl Observed {
    fn gather(service: &Service) -> Observed {
        let dir = &service.dockgate.dir;
        let probes: Vec<(u8, usize, String)> = std::thread::scope(|scope| {
            let handles: Vec<_> = (1..=3u8)
                .flat_map(|client| (0..CASES.len()).map(move |index| (client, index)))
                .map(|(client, index)| {
                    scope.spawn(move || {
                        let case = &CASES[index];
                        let host = if case.host == "gateway" {
                            format!("10.99.{client}.1")
                        } else {
                            case.host.to_owned()
                        };
                        let udp = if case.udp { "--udp " } else { "" };
                        let (_, out, _) = try_sh(&format!(
                            "sandbox-ctl probe {udp}--client {client} {host} {}",
                            case.port
                        ));
                        (client, index, out.trim().to_owned())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let (ok, list, stderr) = try_sh(&format!(
            "busctl --system --json=short call {API} ListPorts"
        ));
        assert!(ok, "ListPorts: {stderr}");
        let list: Value = serde_json::from_str(&list).unwrap();
        let list = list["data"][0].as_array().cloned().unwrap();
        let (ok, ctl, stderr) = try_sh(&format!("{DOCKGATECTL} --json ports"));
        assert!(ok, "dockgatectl ports: {stderr}");
        let ctl: Vec<Value> = serde_json::from_str(&ctl).unwrap();
        let (_, inspect, _) = try_sh(&format!(
            "{DOCKGATED} inspect --json --config {} --state-dir {}",
            dir.join("dockgate.toml").display(),
            service.dockgate.state_dir().display()
        ));
        let inspect: Value = serde_json::from_str(&inspect)
            .unwrap_or_else(|error| panic!("inspect: {error}: {inspect}"));
        let inspect_ports = inspect["ports"].as_array().cloned().unwrap();

        let mut answers = Vec::new();
        for (client, index, probed) in probes {
            let case = &CASES[index];
            let address = client_address(client);
            let (ok, explained, stderr) = try_sh(&format!(
                "busctl --system --json=short call {API} Explain ss {address} {}/{}",
                case.port,
                protocol(case)
            ));
            assert!(ok, "Explain: {stderr}");
            let explained: Value = serde_json::from_str(&explained).unwrap();
            let busctl_field = |row: &Value, key: &str| row[key]["data"].clone();
            let plain_field = |row: &Value, key: &str| row[key].clone();
            let listed = row(&list, case, busctl_field);
            let by_list = listed_allows(
                listed["state"]["data"].as_str().unwrap(),
                &strings(&listed["sources"]["data"]),
                &address,
            );
            let by_ctl = {
                let entry = row(&ctl, case, plain_field);
                listed_allows(
                    entry["state"].as_str().unwrap(),
                    &strings(&entry["sources"]),
                    &address,
                )
            };
            let by_inspect = {
                let outside = &row(&inspect_ports, case, plain_field)["outside"];
                outside["state"]
                    .as_str()
                    .map(|state| listed_allows(state, &strings(&outside["sources"]), &address))
            };
            answers.push(Answer {
                client,
                case: index,
                probed,
                explained: explained["data"][0].as_bool().unwrap(),
                reason: explained["data"][1].as_str().unwrap().to_owned(),
                by_list,
                by_ctl,
                by_inspect,
            });
        }
        answers.sort_by_key(|answer| (answer.client, answer.case));
        Observed { answers }
    }

    /// The pairs where an answer disagrees with the packets, or a denied packet did not end
    /// with the verdict (`reject` refuses TCP and UDP alike; a port dockgate does not judge,
    /// such as one bound to loopback only, ends at the host's zone, which refuses).
    fn disagreements(&self, verdict: &str) -> Vec<String> {
        let mut wrong = Vec::new();
        for answer in &self.answers {
            let Answer {
                client,
                probed,
                explained,
                reason,
                by_list,
                by_ctl,
                by_inspect,
                ..
            } = answer;
            let case = &CASES[answer.case];
            let open = probed == "open";
            let ends_as_verdict = open
                || match (verdict, case.what) {
                    (_, "loopback-only") => probed == "rejected",
                    ("drop", _) => probed == "dropped",
                    _ => probed == "rejected",
                };
            if [*explained, *by_list, *by_ctl] != [open; 3]
                || *by_inspect != Some(open)
                || !ends_as_verdict
            {
                wrong.push(format!(
                    "client{client} to {} ({}): packets {probed}; Explain {explained} \
                     ({reason}); ListPorts {by_list}; dockgatectl ports {by_ctl}; inspect \
                     {by_inspect:?}",
                    case.port, case.what
                ));
            }
        }
        wrong
    }

    fn opened(&self, client: u8, port: u16) -> bool {
        self.answers.iter().any(|answer| {
            answer.client == client && CASES[answer.case].port == port && answer.probed == "open"
        })
    }
}

/// Gathers until everything agrees with the packets (the daemon may still be settling after
/// an event), then checks that the policy is what it says: who gets in where.
fn agree(service: &Service, verdict: &str, when: &str) {
    let started = Instant::now();
    let observed = loop {
        let observed = Observed::gather(service);
        if observed.disagreements(verdict).is_empty() || started.elapsed() > Duration::from_secs(25)
        {
            break observed;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let wrong = observed.disagreements(verdict);
    assert!(
        wrong.is_empty(),
        "{when}, verdict {verdict}: what dockgate says is not what packets do:\n{}\n{}",
        wrong.join("\n"),
        service.log()
    );
    // Not true by agreement alone: the policy itself, pair by pair.
    let expected = [
        (1, 8081, false),
        (3, 8081, true),
        (1, 8082, true),
        (2, 8082, false),
        (2, 8083, true),
        (1, 8083, false),
        (1, 8084, true),
        (2, 8084, false),
        (3, 8085, false),
        (2, 8091, true),
        (1, 8091, false),
        (1, 9000, true),
        (2, 9000, false),
        (3, 9000, true),
    ];
    for (client, port, open) in expected {
        assert_eq!(
            observed.opened(client, port),
            open,
            "{when}, verdict {verdict}: client{client} to {port}"
        );
    }
    eprintln!(
        "{}: {when}, verdict {verdict}: {} pairs agree after {} ms",
        stack(),
        observed.answers.len(),
        started.elapsed().as_millis()
    );
}

#[test]
fn explain_listports_dockgatectl_and_inspect_say_what_packets_do() {
    in_sandbox();
    let restart = "--restart always --stop-timeout 1";
    let _containers = [
        Container::httpd("ans-trusted", &format!("-p 8081:80 {restart}")),
        Container::httpd("ans-exposed", &format!("-p 8082:80 {restart}")),
        Container::httpd("ans-bound", &format!("-p 8083:80 {restart}")),
        Container::httpd("ans-hostip", &format!("-p 10.99.2.1:8084:80 {restart}")),
        Container::httpd("ans-local", &format!("-p 127.0.0.1:8085:80 {restart}")),
        Container::run(
            "ans-range",
            &format!("-p 8090-8091:80-81 {restart}"),
            "/bin/sh -c '/bin/httpd -p 80 -h /www && exec /bin/httpd -f -p 81 -h /www'",
        ),
        Container::udp_echo("ans-udp", &format!("-p 9000:9000/udp {restart}")),
    ];
    let service = Service::start("answers", CONFIG);
    service.wait_for_api();
    for verdict in ["drop", "reject"] {
        if verdict == "reject" {
            std::fs::write(
                service.dockgate.dir.join("dockgate.toml"),
                format!("verdict = \"reject\"\n{CONFIG}"),
            )
            .unwrap();
            let (ok, _, stderr) = try_sh(&format!("{DOCKGATECTL} reload"));
            assert!(ok, "reload: {stderr}");
        }
        agree(&service, verdict, "at start");
        sh("firewall-cmd --reload");
        agree(&service, verdict, "after a firewalld reload");
        sh("sandbox-ctl restart dockerd");
        agree(&service, verdict, "after a dockerd restart");
    }
}
