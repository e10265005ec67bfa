//! Issue 13: dockgate's Cockpit page in a real browser. Debian's cockpit-ws serves it inside
//! the sandbox, headless Chromium logs in through Cockpit's login page as unprivileged users
//! (PAM, the sandbox's private passwd and shadow), and what the page shows and does is held
//! against dockgated's own answers and real packets from client1.
#![cfg(feature = "sandbox-tests")]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use serde_json::{Value, json};

use common::*;

const COCKPIT_WS: &str = "/usr/lib/cockpit/cockpit-ws";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// cockpit-ws and chromedriver listen on the sandbox's own loopback, never the machine's.
const WS_PORT: u16 = 9090;
const DRIVER_PORT: u16 = 9515;
const COCKPIT_URL: &str = "http://127.0.0.1:9090";
/// The package directory Cockpit serves; the test mounts a private copy over it.
const COCKPIT_PACKAGES: &str = "/usr/share/cockpit";
const PASSWORD: &str = "sesame-browser";
/// A source of client1's that no grant admits: the one the refused view is about.
const KNOCKER: &str = "10.99.1.70";
const ADMIN: TestUser = TestUser {
    name: "dgadmin",
    uid: 64981,
};
const READER: TestUser = TestUser {
    name: "dgreader",
    uid: 64982,
};
const STRANGER: TestUser = TestUser {
    name: "dgnone",
    uid: 64983,
};
/// The shipped example rules let group dockgate read and expose; the reader gets read only,
/// and the stranger no rule at all (polkit's defaults: a password nobody can give here).
const READER_RULES: &str = "polkit.addRule(function(action, subject) {\n\
    if (subject.user != \"dgreader\") return;\n\
    if (action.id == \"org.dockgate.Dockgate1.read\") return polkit.Result.YES;\n\
    if (action.id.indexOf(\"org.dockgate.Dockgate1.\") == 0) return polkit.Result.NO;\n\
});\n";

#[derive(Clone, Copy)]
struct TestUser {
    name: &'static str,
    uid: u32,
}

/// A user with PASSWORD in the sandbox's private /etc/passwd and /etc/shadow, added once (the
/// files are appended to: they are bind mounts, and tools that rename cannot replace them),
/// with a home for the bridge's cache in the test's directory (gone with it).
fn add_user(user: TestUser, dir: &Path) {
    let home = dir.join(format!("home-{}", user.name));
    let hash = sh(&format!("openssl passwd -6 -salt dgbrowser {PASSWORD}"));
    sh(&format!(
        "grep -q '^{name}:' /etc/passwd || {{ \
           echo '{name}:x:{uid}:65534:dockgate browser test:{home}:/bin/sh' >> /etc/passwd; \
           echo '{name}:{hash}:20000:0:99999:7:::' >> /etc/shadow; }}; \
         rm -rf {home} && mkdir -p {home} && chown {uid} {home}",
        name = user.name,
        uid = user.uid,
        home = home.display(),
        hash = hash.trim()
    ));
}

/// `user` in group dockgate for the length of the test: /etc/group as it was afterwards, so
/// that the tests after this one find group dockgate as they left it (or not at all).
struct GroupDockgate {
    before: String,
}

impl GroupDockgate {
    fn join(user: TestUser) -> Self {
        let before = std::fs::read_to_string("/etc/group").unwrap();
        let mut found = false;
        let mut text: String = before
            .lines()
            .map(|line| {
                if !line.starts_with("dockgate:") {
                    return format!("{line}\n");
                }
                found = true;
                let members = line.rsplit(':').next().unwrap_or("");
                let comma = if members.is_empty() { "" } else { "," };
                format!("{line}{comma}{}\n", user.name)
            })
            .collect();
        if !found {
            text += &format!("dockgate:x:64999:{}\n", user.name);
        }
        // Written in place: /etc/group is a bind mount.
        std::fs::write("/etc/group", text).unwrap();
        GroupDockgate { before }
    }
}

impl Drop for GroupDockgate {
    fn drop(&mut self) {
        let _ = std::fs::write("/etc/group", &self.before);
    }
}

/// A file in /etc/polkit-1/rules.d (the sandbox's private copy) for the length of the test.
struct PolkitRules(PathBuf);

impl PolkitRules {
    fn install(name: &str, text: &str) -> Self {
        let path = Path::new("/etc/polkit-1/rules.d").join(name);
        std::fs::write(&path, text).unwrap();
        PolkitRules(path)
    }
}

impl Drop for PolkitRules {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `make install` into a scratch DESTDIR, and its Cockpit package in a private copy of
/// /usr/share/cockpit mounted over the machine's (in the sandbox's mount namespace only).
struct InstalledPage;

impl InstalledPage {
    fn install(dir: &Path) -> Self {
        check_page_is_built();
        let destdir = dir.join("destdir");
        let profile_dir = Path::new(DOCKGATED).parent().unwrap();
        sh(&format!(
            "make -s -C {} install DESTDIR={} BIN={}",
            env!("CARGO_MANIFEST_DIR"),
            destdir.display(),
            profile_dir.display()
        ));
        let packages = dir.join("cockpit-packages");
        sh(&format!(
            "mkdir -p {packages} && cp -a {COCKPIT_PACKAGES}/. {packages}/ && \
             cp -a {destdir}/usr/share/cockpit/dockgate {packages}/ && \
             mount --bind {packages} {COCKPIT_PACKAGES}",
            packages = packages.display(),
            destdir = destdir.display()
        ));
        InstalledPage
    }
}

impl Drop for InstalledPage {
    fn drop(&mut self) {
        let _ = try_sh(&format!("umount {COCKPIT_PACKAGES}"));
    }
}

/// The page in cockpit/dist must be the one in cockpit/: the sandbox has no network to build
/// it (tests/install-deps does, with `make cockpit`).
fn check_page_is_built() {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("cockpit");
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !path.is_file() || name.starts_with("package") {
            continue;
        }
        let built = std::fs::read(source.join("dist").join(&name)).ok();
        assert!(
            built.as_deref() == Some(std::fs::read(&path).unwrap().as_slice()),
            "cockpit/dist/{name} is missing or older than cockpit/{name}: run `make cockpit`"
        );
    }
}

/// A daemon this test started, its PID in the sandbox's pid directory so that the sandbox's
/// teardown would stop it should the test die. Stopped by its PID; then the processes it
/// started (Chromium, cockpit-session, the bridges), by their own PIDs, if they outlive it.
struct Daemon {
    name: String,
    child: Child,
}

impl Daemon {
    fn start(name: &str, command: &mut Command, log: &Path) -> Self {
        let child = command
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(log).unwrap())
            .stderr(std::fs::File::create(log.with_extension("err")).unwrap())
            .spawn()
            .unwrap_or_else(|error| panic!("{name}: {error}"));
        std::fs::write(format!("/run/sandbox/pids/{name}"), child.id().to_string()).unwrap();
        Daemon {
            name: name.to_owned(),
            child,
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let descendants = descendants_of(self.child.id());
        let _ = try_sh(&format!("kill -TERM {}", self.child.id()));
        let _ = self.child.wait();
        let _ = std::fs::remove_file(format!("/run/sandbox/pids/{}", self.name));
        let alive = |pid: &u32| Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(*pid);
        let gone = || descendants.iter().all(|pid| !alive(pid));
        // cockpit-ws leaves its sessions to notice the closed socket in their own time: what
        // is left after a second is asked to go, then made to.
        for signal in ["TERM", "KILL"] {
            if eventually(Duration::from_secs(1), gone) {
                return;
            }
            for pid in descendants.iter().filter(|pid| alive(pid)) {
                let _ = try_sh(&format!("kill -{signal} {pid}"));
            }
        }
        if !eventually(Duration::from_secs(5), gone) {
            eprintln!(
                "{}: children left after SIGKILL: {descendants:?}",
                self.name
            );
        }
    }
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(true)
}

/// Every process below `pid`, from /proc's parent links.
fn descendants_of(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|child| {
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).ok()?;
            let parent = stat
                .rsplit(')')
                .next()?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((child, parent))
        })
        .collect();
    let mut found = vec![pid];
    let mut index = 0;
    while index < found.len() {
        let parent = found[index];
        found.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(child, _)| *child),
        );
        index += 1;
    }
    found.remove(0);
    found
}

/// A client of the W3C WebDriver protocol, spoken to chromedriver over HTTP/1.1 on loopback.
/// Our own rather than fantoccini's: the dozen commands this test sends are a few lines each
/// over std's TcpStream and serde_json, while fantoccini (async, on hyper) adds some 30 crates
/// to the test build (ICU's segmenter and its data, a second `http`, `cookie`, `time`) on a
/// 2-core CI machine, and this test calls everything else synchronously anyway.
struct Browser {
    session: String,
    artifacts: PathBuf,
    shots: std::cell::Cell<usize>,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn webdriver(method: &str, path: &str, body: Option<&Value>) -> Value {
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut stream = TcpStream::connect(("127.0.0.1", DRIVER_PORT)).expect("chromedriver listens");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{DRIVER_PORT}\r\n\
         Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // chromedriver keeps the connection open (even when asked to close it): the head, then
    // exactly Content-Length bytes.
    let mut response = Vec::new();
    let mut buffer = [0; 65536];
    let (head, content) = loop {
        let read = stream.read(&mut buffer).unwrap();
        assert!(
            read > 0,
            "{method} {path}: chromedriver closed the connection"
        );
        response.extend_from_slice(&buffer[..read]);
        let Some(end) = response.windows(4).position(|window| window == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&response[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .unwrap_or_else(|| panic!("{method} {path}: no Content-Length in {head}"))
            .trim()
            .parse()
            .unwrap();
        while response.len() < end + 4 + length {
            let read = stream.read(&mut buffer).unwrap();
            assert!(read > 0, "{method} {path}: the answer ended early");
            response.extend_from_slice(&buffer[..read]);
        }
        break (
            head,
            String::from_utf8_lossy(&response[end + 4..end + 4 + length]).into_owned(),
        );
    };
    assert!(head.starts_with("http/1.1 "), "{method} {path}: {head}");
    let answer: Value = serde_json::from_str(&content)
        .unwrap_or_else(|error| panic!("{method} {path}: {error}: {content}"));
    if let Some(error) = answer["value"]["error"].as_str() {
        panic!(
            "{method} {path}: {error}: {}",
            answer["value"]["message"].as_str().unwrap_or("")
        );
    }
    answer["value"].clone()
}

impl Browser {
    /// Chromium headless with a new, empty profile, and the flags that keep it from calling
    /// out: the machine's network is closed and refuses those connections.
    fn open(profile: &Path, artifacts: PathBuf) -> Self {
        let answer = webdriver(
            "POST",
            "/session",
            Some(&json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": CHROMIUM,
                    "args": [
                        "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update",
                        "--disable-sync", "--window-size=1360,1300",
                        format!("--user-data-dir={}", profile.display()),
                    ],
                },
            }}})),
        );
        Browser {
            session: answer["sessionId"]
                .as_str()
                .expect("a session id")
                .to_owned(),
            artifacts,
            shots: std::cell::Cell::new(0),
        }
    }

    fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        webdriver(
            method,
            &format!("/session/{}{path}", self.session),
            body.as_ref(),
        )
    }

    fn go(&self, url: &str) {
        self.command("POST", "/url", Some(json!({ "url": url })));
    }

    fn find(&self, css: &str) -> String {
        let element = self.command(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        element[ELEMENT].as_str().unwrap().to_owned()
    }

    fn click(&self, css: &str) {
        let element = self.find(css);
        self.command(
            "POST",
            &format!("/element/{element}/click"),
            Some(json!({})),
        );
    }

    /// Replaces what the field holds with `text`, typed key by key.
    fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css);
        self.command(
            "POST",
            &format!("/element/{element}/clear"),
            Some(json!({})),
        );
        self.command(
            "POST",
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// Runs `body` (a function body; `arguments` as given) in the current frame.
    fn script(&self, body: &str, arguments: Value) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            Some(json!({"script": body, "args": arguments})),
        )
    }

    /// Waits until `body` returns something truthy; returns it, or panics with `what`.
    fn wait_for(&self, within: Duration, what: &str, body: &str) -> Value {
        let start = Instant::now();
        loop {
            let value = self.script(body, json!([]));
            let truthy = !matches!(value, Value::Null | Value::Bool(false))
                && value != json!("")
                && value != json!(0);
            if truthy {
                return value;
            }
            if start.elapsed() > within {
                self.screenshot(&format!("timeout-{}", what.replace(' ', "-")));
                panic!("waited {} s for {what}", within.as_secs());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The page's own frame inside Cockpit's shell, or (None) the shell itself.
    fn frame(&self, css: Option<&str>) {
        let id = match css {
            Some(css) => json!({ ELEMENT: self.find(css) }),
            None => Value::Null,
        };
        self.command("POST", "/frame", Some(json!({ "id": id })));
    }

    /// Saves what the browser shows as target/browser-artifacts/STACK-NN-NAME.png.
    fn screenshot(&self, name: &str) -> PathBuf {
        let data = self.command("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap())
            .unwrap();
        self.shots.set(self.shots.get() + 1);
        let path = self
            .artifacts
            .join(format!("{}-{:02}-{name}.png", stack(), self.shots.get()));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Cockpit's login page, as a person would use it, then the shell's page for dockgate.
    fn log_in_and_open_page(&self, user: TestUser) {
        self.frame(None);
        self.command("DELETE", "/cookie", None);
        self.go(&format!("{COCKPIT_URL}/"));
        self.wait_for(
            Duration::from_secs(20),
            "the login page",
            "const input = document.getElementById('login-user-input'); \
             return input !== null && input.offsetParent !== null",
        );
        self.type_into("#login-user-input", user.name);
        self.type_into("#login-password-input", PASSWORD);
        self.click("#login-button");
        self.wait_for(
            Duration::from_secs(30),
            "the shell after logging in",
            "return document.getElementById('login') === null && \
                    document.querySelector('#main, .area-ct-subnav, nav') !== null",
        );
        self.go(&format!("{COCKPIT_URL}/dockgate"));
        self.wait_for(
            Duration::from_secs(20),
            "the page's frame",
            "return document.querySelector('iframe[name=\"cockpit1:localhost/dockgate\"]') !== null",
        );
        self.frame(Some("iframe[name=\"cockpit1:localhost/dockgate\"]"));
        self.wait_for(
            Duration::from_secs(20),
            "the page to load",
            "return document.getElementById('blank') !== null",
        );
    }

    /// Waits for the page's state ("live", or why it is blank: "absent", "no-read", ...); on
    /// a timeout, a screenshot and what the page says instead.
    fn expect_state(&self, expected: &str) {
        let within = Duration::from_secs(20);
        let start = Instant::now();
        let mut state = Value::Null;
        while start.elapsed() < within {
            state = self.script(
                "return document.getElementById('blank').dataset.state",
                json!([]),
            );
            if state == expected {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.screenshot(&format!("not-{expected}"));
        panic!(
            "the page is {state}, not {expected}, after {} s: {}",
            within.as_secs(),
            self.text("#main")
        );
    }

    fn text(&self, css: &str) -> String {
        self.script(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : null",
            json!([css]),
        )
        .as_str()
        .unwrap_or_else(|| panic!("no element {css}"))
        .to_owned()
    }

    /// The ports table as shown: one object per row.
    fn port_rows(&self) -> Vec<Value> {
        self.script(
            "return [...document.querySelectorAll('#ports tbody tr[data-port]')].map(tr => ({
                port: tr.dataset.port, host_ip: tr.dataset.hostIp, judged_by: tr.dataset.judgedBy,
                state: tr.querySelector('[data-state]').dataset.state,
                cells: [...tr.cells].map(c => c.innerText.trim()),
                expose_enabled: !tr.querySelector('[data-action=expose]').disabled }))",
            json!([]),
        )
        .as_array()
        .unwrap()
        .clone()
    }

    fn exposure_rows(&self) -> Vec<Value> {
        self.script(
            "return [...document.querySelectorAll('#exposures tbody tr[data-id]')].map(tr => ({
                id: tr.dataset.id, origin: tr.dataset.origin,
                cells: [...tr.cells].map(c => c.innerText.trim()),
                remove: tr.querySelector('[data-action=unexpose]') ?
                        (tr.querySelector('[data-action=unexpose]').disabled ? 'disabled' : 'enabled') : 'none' }))",
            json!([]),
        )
        .as_array()
        .unwrap()
        .clone()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends Chromium; chromedriver itself is a Daemon.
        let _ = std::panic::catch_unwind(|| {
            webdriver("DELETE", &format!("/session/{}", self.session), None)
        });
    }
}

/// target/browser-artifacts: this run's screenshots and daemon logs, named STACK-...; those of
/// an earlier run on this stack are removed first.
fn fresh_artifacts() -> PathBuf {
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    for entry in std::fs::read_dir(&artifacts).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(&format!("{}-", stack()))
        {
            std::fs::remove_file(path).unwrap();
        }
    }
    artifacts
}

/// An API call as root through busctl's JSON output: the reply's arguments.
fn api_json(call: &str) -> Value {
    let out = sh(&format!("busctl --system --json=short call {API} {call}"));
    let reply: Value = serde_json::from_str(&out).unwrap();
    reply["data"].clone()
}

/// An a{sv} from busctl's JSON as key -> plain value.
fn plain(dictionary: &Value) -> Value {
    Value::Object(
        dictionary
            .as_object()
            .unwrap()
            .iter()
            .map(|(key, variant)| (key.clone(), variant["data"].clone()))
            .collect(),
    )
}

fn daemon_ports() -> Vec<Value> {
    api_json("ListPorts")[0]
        .as_array()
        .unwrap()
        .iter()
        .map(plain)
        .collect()
}

fn daemon_exposures() -> Vec<Value> {
    api_json("ListExposures")[0]
        .as_array()
        .unwrap()
        .iter()
        .map(plain)
        .collect()
}

/// dockgate's rules in the kernel, both families, sorted.
fn dockgate_rules() -> Vec<String> {
    let mut rules: Vec<String> = sh("for t in iptables ip6tables; do \
                                       $t-save -t mangle; $t-save -t filter; $t-save -t nat; done")
    .lines()
    .filter(|line| line.contains("dockgate"))
    .map(str::to_owned)
    .collect();
    rules.sort();
    rules
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The page's ports table says, row for row, what ListPorts says: every published port, its
/// state, what judges it (dockgate, or the zone where docker-proxy serves it), who may reach it.
fn assert_ports_as_daemon_says(browser: &Browser) {
    let key = |port: &str, host_ip: &Value, state: &Value, judged_by: &Value| {
        format!("{port} on {host_ip}: {state}, judged by {judged_by}")
    };
    let rows = browser.port_rows();
    let mut shown: Vec<String> = rows
        .iter()
        .map(|row| {
            key(
                row["port"].as_str().unwrap(),
                &row["host_ip"],
                &row["state"],
                &row["judged_by"],
            )
        })
        .collect();
    let daemon = daemon_ports();
    let mut expected: Vec<String> = daemon
        .iter()
        .map(|port| {
            let name = format!(
                "{}/{}",
                port["host_port"],
                port["protocol"].as_str().unwrap()
            );
            key(&name, &port["host_ip"], &port["state"], &port["judged_by"])
        })
        .collect();
    shown.sort();
    expected.sort();
    assert_eq!(shown, expected, "the page's ports against ListPorts");
    for port in &daemon {
        let name = format!(
            "{}/{}",
            port["host_port"],
            port["protocol"].as_str().unwrap()
        );
        let row = rows
            .iter()
            .find(|row| row["port"] == name.as_str() && row["host_ip"] == port["host_ip"])
            .unwrap();
        let (state, reach) = (
            row["cells"][4].as_str().unwrap(),
            row["cells"][5].as_str().unwrap(),
        );
        let sources: Vec<&str> = port["sources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|source| source.as_str().unwrap())
            .collect();
        if let Some(zone) = port["judged_by"].as_str().unwrap().strip_prefix("zone ") {
            assert!(
                state.contains("docker-proxy") && state.contains(zone),
                "{row}"
            );
            assert!(reach.contains(zone), "{row}");
            assert_eq!(
                row["expose_enabled"], false,
                "dockgate does not judge it: {row}"
            );
        } else if port["loopback_only"] == true {
            assert!(state.contains("Loopback only"), "{row}");
        } else if port["audited"] == true {
            assert!(state.contains("Open, audited"), "{row}");
            assert!(reach.contains("audited"), "{row}");
        } else if !sources.is_empty() && !sources.contains(&"any") {
            assert_eq!(reach, sources.join(", "), "{row}");
        }
    }
}

/// The Cockpit page, end to end: dockgated absent and then started under the open page; the
/// real ports; a bad source refused next to its field with nothing changed; an exposure made in
/// the dialog that lets client1 in, and removed again in the page; a container started while
/// the page is open; and the read-only and no-read pages for users with less.
#[test]
fn the_cockpit_page_shows_and_changes_exposure_for_real() {
    in_sandbox();
    for program in [COCKPIT_WS, CHROMEDRIVER, CHROMIUM] {
        assert!(
            Path::new(program).exists(),
            "{program} is missing: run tests/install-deps"
        );
    }
    let started = Instant::now();
    let dockgate = Dockgate::new("browser");
    let artifacts = fresh_artifacts();
    let log = |name: &str| artifacts.join(format!("{}-{name}.log", stack()));
    for user in [ADMIN, READER, STRANGER] {
        add_user(user, &dockgate.dir);
    }
    let _group = GroupDockgate::join(ADMIN);
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/polkit/50-dockgate.rules.example"
    ))
    .unwrap();
    let _example_rules = PolkitRules::install("50-dockgate-browser.rules", &example);
    let _reader_rules = PolkitRules::install("49-dockgate-browser-reader.rules", READER_RULES);
    let _page = InstalledPage::install(&dockgate.dir);

    add_client_address(1, "10.99.1.50");
    // Two host ports to one container port: the refused view tells them apart.
    let _web = Container::httpd("browser-web", "-p 8080:80 -p 8084:80");
    let _local = Container::httpd("browser-local", "-p 127.0.0.1:9999:80");
    // A network without IPv6: Docker serves [::]:8082 with docker-proxy on the host, where a
    // firewalld zone judges it rather than dockgate.
    let _ipv4_only = DockerNetwork::create("browser-v4");
    let _proxied = Container::httpd("browser-proxied", "--network browser-v4 -p 8082:80");
    std::fs::write(
        dockgate.dir.join("dockgate.toml"),
        "trusted = [\"10.99.1.50\"]\n\n[[expose]]\nport = \"8443/tcp\"\nfrom = [\"192.0.2.0/24\"]\n\
         comment = \"office VPN\"\n",
    )
    .unwrap();

    let _ws = Daemon::start(
        "browser-cockpit-ws",
        Command::new(COCKPIT_WS).args([
            "--no-tls",
            "--address",
            "127.0.0.1",
            "--port",
            &WS_PORT.to_string(),
        ]),
        &log("cockpit-ws"),
    );
    let _driver = Daemon::start(
        "browser-chromedriver",
        Command::new(CHROMEDRIVER).args([format!("--port={DRIVER_PORT}")]),
        &log("chromedriver"),
    );
    assert!(
        eventually(Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", WS_PORT)).is_ok()
                && TcpStream::connect(("127.0.0.1", DRIVER_PORT)).is_ok()
        }),
        "cockpit-ws or chromedriver did not listen"
    );
    let browser = Browser::open(&dockgate.dir.join("chromium-profile"), artifacts.clone());

    // Before dockgated runs: the page says so, and comes alive once it takes its name.
    browser.log_in_and_open_page(ADMIN);
    browser.expect_state("absent");
    assert!(
        browser
            .text("#blank-title")
            .contains("dockgated is not running")
    );
    browser.screenshot("not-running");
    let service = Service::start(&dockgate, &log("dockgated"));
    assert!(
        eventually(Duration::from_secs(20), || {
            try_sh("busctl --system status org.dockgate.Dockgate1").0
        }),
        "dockgated did not take its name:\n{}",
        service.log()
    );
    let named = Instant::now();
    browser.expect_state("live");
    eprintln!(
        "{}: the open page went live {} ms after dockgated took its name",
        stack(),
        named.elapsed().as_millis()
    );
    // The policy in force before the page changes it (a first start may reload firewalld, and
    // Docker rebuilds its rules after that: the daemon tests measure that part).
    assert!(
        eventually(Duration::from_secs(20), || service
            .log()
            .contains("reconciled")),
        "no reconcile:\n{}",
        service.log()
    );
    assert_eq!(
        probe_until_from("10.99.1.50", 8080, "open", Duration::from_secs(15)),
        "open",
        "the trusted source\n{}",
        service.log()
    );
    assert_eq!(
        probe_until(HOST_V4, 8080, "dropped", Duration::from_secs(10)),
        "dropped",
        "client1 before any exposure\n{}\n{}",
        service.log(),
        sh("iptables-save -t mangle; ip -n client1 -4 addr")
    );

    // The real ports, as dockgated judges them; loopback-only and config exposures read only.
    browser.wait_for(
        Duration::from_secs(10),
        "the ports of browser-web, browser-local and browser-proxied",
        "return document.querySelectorAll('#ports tr[data-port=\"8080/tcp\"], #ports tr[data-port=\"9999/tcp\"], \
                                           #ports tr[data-judged-by^=\"zone \"]').length >= 4",
    );
    assert_ports_as_daemon_says(&browser);
    let rows = browser.port_rows();
    let local = rows
        .iter()
        .find(|row| row["port"] == "9999/tcp")
        .expect("the loopback port is shown");
    assert!(
        local["cells"][4]
            .as_str()
            .unwrap()
            .contains("Loopback only"),
        "{local}"
    );
    assert_eq!(local["expose_enabled"], false, "{local}");
    let config = browser.exposure_rows();
    assert!(
        config
            .iter()
            .any(|row| row["origin"] == "config" && row["remove"] == "none"),
        "the config exposure, read only: {config:?}"
    );
    let status = browser.text("#status");
    for expected in ["Connected", "Denied", "Dropped", "docker"] {
        assert!(
            status.contains(expected),
            "{expected} in the status: {status}"
        );
    }

    expose_a_bad_source_then_client1(&browser, &dockgate, &service);
    container_started_while_the_page_is_open(&browser);
    unexpose_in_the_page(&browser);
    refused_in_the_page(&browser);

    // dockgated stopping under the open page, and coming back: the page follows it, and its
    // properties are the new process's (a later LastReconcile).
    let reconciled_before = browser.script(
        "return Number(document.querySelector('[data-reconciled]').dataset.reconciled)",
        json!([]),
    );
    drop(service);
    browser.expect_state("absent");
    let _service = Service::start(&dockgate, &log("dockgated"));
    browser.expect_state("live");
    browser.wait_for(
        Duration::from_secs(20),
        "the restarted dockgated's LastReconcile",
        &format!(
            "return Number(document.querySelector('[data-reconciled]').dataset.reconciled) > {reconciled_before}"
        ),
    );
    // The counts outlived the restart, and the page asked for them again.
    assert_refused_as_daemon_says(&browser);

    // Read but not expose: everything shown, no change enabled, and why.
    browser.log_in_and_open_page(READER);
    browser.expect_state("live");
    browser.wait_for(
        Duration::from_secs(10),
        "the reader's ports",
        "return document.querySelectorAll('#ports tr[data-port]').length > 0 && \
                document.querySelectorAll('#exposures tr[data-id]').length > 0",
    );
    assert_ports_as_daemon_says(&browser);
    // The refused sources are shown to a reader too, without their Expose.
    browser
        .click("#ports tr[data-port=\"8080/tcp\"][data-host-ip=\"0.0.0.0\"] [data-toggle=refused]");
    browser.wait_for(
        Duration::from_secs(5),
        "the reader's list of refused sources",
        &format!("return document.querySelector('#ports tr[data-source=\"{KNOCKER}\"] [data-action=expose-source]') !== null"),
    );
    let enabled = browser.script(
        "return [...document.querySelectorAll('button[data-action]')].filter(b => !b.disabled).length",
        json!([]),
    );
    assert_eq!(enabled, 0, "change buttons enabled for a read-only user");
    let notice = browser.text("#read-only");
    assert!(
        notice.contains("org.dockgate.Dockgate1.expose") && notice.contains(READER.name),
        "{notice}"
    );
    browser.screenshot("read-only");

    // No read: a page that says why it is empty.
    browser.log_in_and_open_page(STRANGER);
    browser.expect_state("no-read");
    let body = browser.text("#blank");
    assert!(
        body.contains("org.dockgate.Dockgate1.read") && body.contains(STRANGER.name),
        "{body}"
    );
    assert_eq!(
        browser.script(
            "return document.querySelectorAll('#live:not([hidden]) tr[data-port]').length",
            json!([])
        ),
        0
    );
    browser.screenshot("no-read");

    audit_in_the_page(&browser, &dockgate);
    eprintln!(
        "{}: the browser test took {:.1} s",
        stack(),
        started.elapsed().as_secs_f64()
    );
}

/// A bad source in the dialog: the daemon's InvalidArgument under the sources field, the state
/// file and the kernel's rules as they were. Then client1's address for 10 minutes, which lets
/// client1 in, and the page shows the exposure and Explain agrees.
fn expose_a_bad_source_then_client1(browser: &Browser, dockgate: &Dockgate, service: &Service) {
    let state_file = dockgate.state_dir().join("exposures.json");
    let state_before = std::fs::read(&state_file).ok();
    let rules_before = dockgate_rules();
    let exposures_before = daemon_exposures().len();

    browser
        .click("#ports tr[data-port=\"8080/tcp\"][data-host-ip=\"0.0.0.0\"] [data-action=expose]");
    browser.wait_for(
        Duration::from_secs(5),
        "the Expose dialog",
        "return document.getElementById('expose-dialog').open",
    );
    browser.type_into("#expose-sources", "10.99.1.2 10.99.1.300");
    browser.click("#expose-duration-custom");
    browser.type_into("#expose-custom-amount", "10");
    browser.type_into("#expose-comment", "browser test");
    browser.click("#expose-submit");
    let error = browser.wait_for(
        Duration::from_secs(10),
        "the sources field's error",
        "return document.getElementById('expose-sources-error').innerText",
    );
    let error = error.as_str().unwrap();
    assert!(error.starts_with("sources[1]: "), "{error}");
    assert!(
        browser.script(
            "return document.getElementById('expose-dialog').open",
            json!([])
        ) == true,
        "the dialog stays open on an error"
    );
    browser.screenshot("bad-source");
    assert_eq!(
        std::fs::read(&state_file).ok(),
        state_before,
        "exposures.json"
    );
    assert_eq!(dockgate_rules(), rules_before, "the kernel's rules");
    assert_eq!(daemon_exposures().len(), exposures_before);
    assert_eq!(probe(HOST_V4, 8080), "dropped");

    browser.type_into("#expose-sources", "10.99.1.2");
    browser.click("#expose-submit");
    browser.wait_for(
        Duration::from_secs(10),
        "the dialog to close",
        "return !document.getElementById('expose-dialog').open",
    );
    assert_eq!(
        probe(HOST_V4, 8080),
        "open",
        "client1 after the page exposed 8080/tcp to it\n{}",
        service.log()
    );
    let runtime: Vec<Value> = daemon_exposures()
        .into_iter()
        .filter(|exposure| exposure["origin"] == "runtime")
        .collect();
    assert_eq!(runtime.len(), 1, "{runtime:?}");
    let exposure = &runtime[0];
    assert_eq!(exposure["sources"], json!(["10.99.1.2"]));
    assert_eq!(exposure["port"], "8080/tcp");
    assert_eq!(exposure["owner_uid"], ADMIN.uid);
    assert_eq!(exposure["comment"], "browser test");
    let left = exposure["expires_at"].as_u64().unwrap() as i64 - now() as i64;
    assert!((590..=600).contains(&left), "{left} s left of 10 minutes");

    let id = exposure["id"].as_str().unwrap();
    let row = browser.wait_for(
        Duration::from_secs(5),
        "the new exposure's row",
        &format!(
            "const tr = document.querySelector('#exposures tr[data-id=\"{id}\"]'); \
             return tr ? [...tr.cells].map(c => c.innerText.trim()) : null"
        ),
    );
    let cells: Vec<&str> = row
        .as_array()
        .unwrap()
        .iter()
        .map(|cell| cell.as_str().unwrap())
        .collect();
    assert_eq!(cells[0], "8080/tcp");
    assert_eq!(cells[1], "10.99.1.2");
    assert_eq!(cells[3], ADMIN.name, "set by");
    assert_eq!(cells[4], "browser test");
    assert!(cells[5].starts_with("9 min"), "time left: {}", cells[5]);
    browser.wait_for(
        Duration::from_secs(5),
        "8080/tcp shown as exposed",
        "return document.querySelector('#ports tr[data-port=\"8080/tcp\"] [data-state]').dataset.state === 'exposed'",
    );
    assert_ports_as_daemon_says(browser);

    // Would client1 get in? The page asks Explain, and says what dockgated says.
    browser.type_into("#explain-source", "10.99.1.2");
    browser.type_into("#explain-port", "8080/tcp");
    browser.click("#explain-check");
    let reason = browser.wait_for(
        Duration::from_secs(5),
        "Explain's answer",
        "const r = document.getElementById('explain-reason'); return r ? r.innerText : null",
    );
    let daemon = api_json("Explain ss 10.99.1.2 8080/tcp");
    assert_eq!(daemon[0], true);
    assert_eq!(reason, daemon[1]);
    assert_eq!(
        browser.script(
            "return document.querySelector('.dg-explain-answer').dataset.allowed",
            json!([])
        ),
        "true"
    );
    browser.screenshot("exposed");
}

/// A container started while the page is open shows up in the ports table by itself.
fn container_started_while_the_page_is_open(browser: &Browser) {
    // The exposure made before is not touched by what follows: its row must stay the same
    // element, or a click on its Remove that is under way (press, then release) is lost.
    browser.script(
        "window.dgRemove = document.querySelector(\
         '#exposures tr[data-origin=\"runtime\"] [data-action=unexpose]'); return null",
        json!([]),
    );
    let late = Container::httpd("browser-late", "-p 8081:80");
    let started = Instant::now();
    browser.wait_for(
        Duration::from_secs(2),
        "browser-late's port without a reload",
        "return document.querySelector('#ports tr[data-port=\"8081/tcp\"]') !== null",
    );
    eprintln!(
        "{}: a new container's port was in the table {} ms after docker run returned",
        stack(),
        started.elapsed().as_millis()
    );
    assert_ports_as_daemon_says(browser);
    drop(late);
    browser.wait_for(
        Duration::from_secs(2),
        "browser-late's port to go without a reload",
        "return document.querySelector('#ports tr[data-port=\"8081/tcp\"]') === null",
    );
    assert_eq!(
        browser.script("return window.dgRemove.isConnected", json!([])),
        true,
        "the ports table changed twice; the exposures' rows, unchanged, must stay in the page"
    );
}

/// Remove in the page: the exposure is gone, and client1 is refused again.
fn unexpose_in_the_page(browser: &Browser) {
    let row = "#exposures tr[data-origin=\"runtime\"]";
    assert_eq!(
        browser.script(
            &format!("return document.querySelector('{row} [data-action=unexpose]').disabled"),
            json!([])
        ),
        false,
        "the owner may remove their exposure"
    );
    browser.click(&format!("{row} [data-action=unexpose]"));
    browser.wait_for(
        Duration::from_secs(10),
        "the exposure's row to go",
        &format!("return document.querySelector('{row}') === null"),
    );
    assert!(
        daemon_exposures()
            .iter()
            .all(|exposure| exposure["origin"] != "runtime")
    );
    assert_eq!(probe(HOST_V4, 8080), "dropped", "client1 after Remove");
}

/// `dockgatectl refused` for the last hour, as JSON: one entry per port, protocol, source and
/// kind (refused, or would be).
fn daemon_refused() -> Vec<Value> {
    let (ok, stdout, stderr) = dockgatectl("--json refused --since 1h");
    assert!(ok, "dockgatectl refused: {stderr}");
    serde_json::from_str(&stdout).unwrap()
}

/// Per port ("8080/tcp"): connections refused, their distinct sources, and the same for those
/// audit let in that "deny" would refuse.
type RefusedCounts = BTreeMap<String, [u64; 4]>;

fn refused_counts_of_daemon() -> RefusedCounts {
    let mut sources: BTreeMap<(String, bool), BTreeSet<String>> = BTreeMap::new();
    let mut counts = RefusedCounts::new();
    for entry in daemon_refused() {
        let port = format!("{}/{}", entry["port"], entry["protocol"].as_str().unwrap());
        let would_be = entry["would_be"] == true;
        let kind = if would_be { 2 } else { 0 };
        counts.entry(port.clone()).or_default()[kind] += entry["count"].as_u64().unwrap();
        sources
            .entry((port, would_be))
            .or_default()
            .insert(entry["source"].as_str().unwrap().to_owned());
    }
    for ((port, would_be), set) in sources {
        counts.get_mut(&port).unwrap()[if would_be { 3 } else { 1 }] = set.len() as u64;
    }
    counts
}

/// The same, as the page shows it on the ports' rows (an IPv4 and an IPv6 row of one port
/// each show their own family's sources).
fn refused_counts_of_page(browser: &Browser) -> RefusedCounts {
    let rows = browser.script(
        "return [...document.querySelectorAll('#ports tbody tr[data-port]')].flatMap(tr => {
            const b = tr.querySelector('[data-toggle=refused]');
            return b ? [[tr.dataset.port, Number(b.dataset.refused), Number(b.dataset.refusedSources),
                         Number(b.dataset.wouldRefuse), Number(b.dataset.wouldRefuseSources)]] : [];
         })",
        json!([]),
    );
    let mut counts = RefusedCounts::new();
    for row in rows.as_array().unwrap() {
        let shown = counts
            .entry(row[0].as_str().unwrap().to_owned())
            .or_default();
        for (kind, total) in shown.iter_mut().enumerate() {
            *total += row[kind + 1].as_u64().unwrap();
        }
    }
    counts
}

/// The page's counts per port are `dockgatectl refused`'s, once RefusedChanged has had its
/// second (it comes at most once a second) and the page has asked again.
fn assert_refused_as_daemon_says(browser: &Browser) -> RefusedCounts {
    let mut daemon = refused_counts_of_daemon();
    let same = eventually(Duration::from_secs(5), || {
        daemon = refused_counts_of_daemon();
        refused_counts_of_page(browser) == daemon
    });
    if !same {
        browser.screenshot("refused-differs");
    }
    assert_eq!(
        refused_counts_of_page(browser),
        daemon,
        "the page's refused counts against dockgatectl refused"
    );
    daemon
}

/// The lines the page writes for one port's counts, from dockgatectl's numbers.
fn refused_lines(counts: [u64; 4]) -> String {
    let sources = |n: u64| format!("{n} source{}", if n == 1 { "" } else { "s" });
    let mut lines = Vec::new();
    if counts[0] > 0 {
        lines.push(format!("Refused {} from {}", counts[0], sources(counts[1])));
    }
    if counts[2] > 0 {
        lines.push(format!(
            "Would refuse {} from {}",
            counts[2],
            sources(counts[3])
        ));
    }
    lines.join("\n")
}

/// `attempts` connections from KNOCKER to HOST_V4:`port`, five at a time, each from its own
/// source port counting up from `first_source_port`: dockgated takes a second attempt from the
/// same source port within 130 s for a retried SYN of the first (and counts it once), and the
/// kernel's own choice may repeat a port. Five a second is well within the rule's limit (20 a
/// second after a burst of 20, per port): every attempt is counted.
fn knock(port: u16, attempts: u16, first_source_port: u16) {
    for wave in 0..attempts / 5 {
        let first = first_source_port + wave * 5;
        // As `sandbox-ctl probe` tells its answers apart, with the source port chosen.
        let answers = sh(&format!(
            "knock() {{ if out=$(ip netns exec client1 socat -u /dev/null \
               TCP:{HOST_V4}:{port},connect-timeout=1,bind={KNOCKER}:$1 2>&1); then echo open; \
               else case $out in *refused*|*unreachable*|*prohibited*) echo rejected ;; *) echo dropped ;; esac; fi; }}; \
             for source_port in $(seq {first} {last}); do knock $source_port & done; wait",
            last = first + 4
        ));
        assert_eq!(
            answers.split_whitespace().collect::<Vec<_>>(),
            ["dropped"; 5],
            "{port}"
        );
    }
}

/// Issue 20: KNOCKER, a source of client1's that nothing admits, tries 20 times on 8080 and 5
/// times on 8084 (the same container port): the page shows per port what `dockgatectl refused`
/// shows, live on RefusedChanged, and the sources behind a count; "Expose to this source" opens
/// the dialog with the port and the source filled in, and what it exposes lets KNOCKER in.
fn refused_in_the_page(browser: &Browser) {
    add_client_address(1, KNOCKER);
    knock(8080, 20, 41000);
    knock(8084, 5, 41100);
    let probed = Instant::now();
    let knocker = || -> Vec<(String, u64)> {
        daemon_refused()
            .iter()
            .filter(|entry| entry["source"] == KNOCKER && entry["would_be"] == false)
            .map(|entry| {
                (
                    format!("{}/tcp", entry["port"]),
                    entry["count"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let expected = vec![("8080/tcp".to_owned(), 20), ("8084/tcp".to_owned(), 5)];
    assert!(
        eventually(Duration::from_secs(10), || knocker() == expected),
        "dockgatectl refused for {KNOCKER}: {:?}",
        knocker()
    );
    browser.wait_for(
        Duration::from_secs(5),
        "8084/tcp's refusals in the page",
        "const b = document.querySelector('#ports tr[data-port=\"8084/tcp\"][data-host-ip=\"0.0.0.0\"] [data-toggle=refused]'); \
         return b !== null && b.dataset.refused === '5'",
    );
    eprintln!(
        "{}: the page showed the refusals {} ms after the last attempts timed out",
        stack(),
        probed.elapsed().as_millis()
    );
    let counts = assert_refused_as_daemon_says(browser);
    // client1's own address was refused on 8080 earlier in the test: more than KNOCKER there.
    assert!(
        counts["8080/tcp"][0] > 20 && counts["8080/tcp"][1] == 2,
        "{counts:?}"
    );
    for port in ["8080/tcp", "8084/tcp"] {
        let toggle = format!(
            "#ports tr[data-port=\"{port}\"][data-host-ip=\"0.0.0.0\"] [data-toggle=refused]"
        );
        assert_eq!(
            browser.text(&toggle).trim(),
            refused_lines(counts[port]),
            "{port}"
        );
    }
    assert_eq!(
        browser
            .text("#ports tr[data-port=\"8084/tcp\"] [data-toggle=refused]")
            .trim(),
        "Refused 5 from 1 source"
    );

    // The sources behind 8080's count, as dockgatectl lists them.
    browser
        .click("#ports tr[data-port=\"8080/tcp\"][data-host-ip=\"0.0.0.0\"] [data-toggle=refused]");
    let listed = browser.wait_for(
        Duration::from_secs(5),
        "8080/tcp's refused sources",
        "const rows = [...document.querySelectorAll('#ports tr[data-refused-of=\"8080/tcp 0.0.0.0\"] tr[data-source]')]; \
         return rows.length ? rows.map(tr => [tr.dataset.source, Number(tr.dataset.count), tr.cells[3].innerText.trim()]) : null",
    );
    let mut shown: Vec<(String, u64)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row[0].as_str().unwrap().to_owned(),
                row[1].as_u64().unwrap(),
            )
        })
        .collect();
    let mut daemon: Vec<(String, u64)> = daemon_refused()
        .iter()
        .filter(|entry| entry["port"] == 8080 && !entry["source"].as_str().unwrap().contains(':'))
        .map(|entry| {
            (
                entry["source"].as_str().unwrap().to_owned(),
                entry["count"].as_u64().unwrap(),
            )
        })
        .collect();
    shown.sort();
    daemon.sort();
    assert_eq!(
        shown, daemon,
        "8080/tcp's sources against dockgatectl refused"
    );
    assert!(
        listed.as_array().unwrap().iter().all(|row| {
            let seen = row[2].as_str().unwrap();
            seen == "Just now" || seen.ends_with(" ago")
        }),
        "last seen: {listed}"
    );
    // The toggle's click scrolled the page; the status above belongs in the picture.
    browser.script("window.scrollTo(0, 0); return null", json!([]));
    browser.screenshot("refused");

    // Expose to this source: the dialog, filled in; what it exposes lets KNOCKER in.
    let action = format!("#ports tr[data-source=\"{KNOCKER}\"] [data-action=expose-source]");
    assert_eq!(
        browser.script(
            &format!("return document.querySelector('{action}').disabled"),
            json!([])
        ),
        false,
        "a member of group dockgate may expose"
    );
    browser.click(&action);
    browser.wait_for(
        Duration::from_secs(5),
        "the Expose dialog from a refused source",
        "return document.getElementById('expose-dialog').open",
    );
    assert_eq!(browser.text("#expose-title"), "Expose 8080/tcp");
    assert_eq!(
        browser.script(
            "return document.getElementById('expose-sources').value",
            json!([])
        ),
        KNOCKER
    );
    browser.screenshot("expose-to-source");
    browser.click("#expose-submit");
    browser.wait_for(
        Duration::from_secs(10),
        "the dialog to close",
        "return !document.getElementById('expose-dialog').open",
    );
    assert_eq!(
        probe_until_from(KNOCKER, 8080, "open", Duration::from_secs(5)),
        "open",
        "{KNOCKER} after Expose to this source"
    );
    assert_eq!(
        probe_from(KNOCKER, HOST_V4, 8084),
        "dropped",
        "the other port stays shut"
    );
    let exposure = daemon_exposures()
        .into_iter()
        .find(|exposure| exposure["origin"] == "runtime")
        .expect("the exposure made from the refused source");
    assert_eq!(exposure["sources"], json!([KNOCKER]));
    assert_eq!(exposure["port"], "8080/tcp");
    assert_eq!(exposure["owner_uid"], ADMIN.uid);
    sh(&format!(
        "{DOCKGATECTL} unexpose {}",
        exposure["id"].as_str().unwrap()
    ));
    assert_eq!(
        probe_until_from(KNOCKER, 8080, "dropped", Duration::from_secs(5)),
        "dropped"
    );
}

/// default = "audit" and a reload: the ports are open and audited in the page, and what
/// "deny" would refuse is counted apart from what it refused before.
fn audit_in_the_page(browser: &Browser, dockgate: &Dockgate) {
    let config = dockgate.dir.join("dockgate.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("default = \"audit\"\n{text}")).unwrap();
    sh(&format!("{DOCKGATECTL} reload"));
    browser.log_in_and_open_page(ADMIN);
    browser.expect_state("live");
    browser.wait_for(
        Duration::from_secs(10),
        "8084/tcp open and audited",
        "const s = document.querySelector('#ports tr[data-port=\"8084/tcp\"][data-host-ip=\"0.0.0.0\"] [data-state]'); \
         return s !== null && s.dataset.audited === 'true'",
    );
    assert_ports_as_daemon_says(browser);
    assert_eq!(
        probe_until_from(KNOCKER, 8084, "open", Duration::from_secs(5)),
        "open"
    );
    browser.wait_for(
        Duration::from_secs(5),
        "8084/tcp's would-be refusals",
        "const b = document.querySelector('#ports tr[data-port=\"8084/tcp\"] [data-toggle=refused]'); \
         return b !== null && Number(b.dataset.wouldRefuse) > 0",
    );
    let counts = assert_refused_as_daemon_says(browser);
    assert!(counts["8084/tcp"][2] >= 1, "{counts:?}");
    assert_eq!(
        browser
            .text("#ports tr[data-port=\"8084/tcp\"] [data-toggle=refused]")
            .trim(),
        refused_lines(counts["8084/tcp"])
    );
    assert!(browser.text("#status").contains("Open, audited"));
    assert!(
        browser.text("#audit-notice").contains("default = \"deny\""),
        "{}",
        browser.text("#notices")
    );
    browser.screenshot("audit");
}

/// A Docker network, removed when dropped (after the containers in it).
struct DockerNetwork(&'static str);

impl DockerNetwork {
    fn create(name: &'static str) -> Self {
        let _ = try_sh(&format!("docker network rm {name}"));
        sh(&format!("docker network create {name} >/dev/null"));
        DockerNetwork(name)
    }
}

impl Drop for DockerNetwork {
    fn drop(&mut self) {
        let _ = try_sh(&format!("docker network rm {}", self.0));
    }
}

/// dockgated with the test's config and state dir, as a service; SIGTERM when dropped (the
/// Dockgate's own drop then takes its rules out).
struct Service {
    child: Child,
    log: PathBuf,
}

impl Service {
    fn start(dockgate: &Dockgate, log: &Path) -> Self {
        let log = log.to_owned();
        let child = Command::new(DOCKGATED)
            .args([
                "--config",
                &dockgate.dir.join("dockgate.toml").display().to_string(),
            ])
            .args(["--state-dir", &dockgate.state_dir().display().to_string()])
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap(),
            )
            .spawn()
            .unwrap();
        Service { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = try_sh(&format!("kill -TERM {}", self.child.id()));
        let _ = self.child.wait();
    }
}
