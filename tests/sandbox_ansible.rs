//! The Ansible collection in ansible/ (dockgate.dockgate), built with ansible-galaxy and run by
//! the pinned ansible-core of tests/install-deps with connection local: the role against the
//! sandbox's real systemd (tests/sandbox/lib.sh, start_systemd), `make install` from this
//! checkout into the sandbox's /run, its config in the nested systemd's private /etc/dockgate;
//! the modules against a running dockgated, as root and as a user polkit does not let expose.
//! Every claim is checked with packets from a client.
#![cfg(feature = "sandbox-tests")]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

const SYSTEMD: &str = "/run/sandbox/systemd";
/// /etc/dockgate/dockgate.toml and /var/lib/dockgate as the nested systemd's services see them.
const CONFIG: &str = "/run/sandbox/systemd/etc-dockgate/dockgate.toml";
const STATE: &str = "/run/sandbox/systemd/var-lib/dockgate";
/// Where the role's `make install` puts dockgate: the sandbox's /run, gone with it.
const PREFIX: &str = "/run/sandbox/systemd/usr";

fn ansible_dir() -> String {
    std::env::var("DOCKGATE_ANSIBLE").unwrap_or_else(|_| "/var/cache/dockgate/ansible".to_owned())
}

fn tool(name: &str) -> String {
    format!("{}/venv/bin/{name}", ansible_dir())
}

/// A directory of the test's own (playbooks, the installed collection, ansible's temp files),
/// readable by the unprivileged user; removed when dropped.
struct Workdir(PathBuf);

impl Workdir {
    fn new(name: &str) -> Workdir {
        let dir = std::env::temp_dir().join(format!("dockgate-test-{}-{name}", stack()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        sh(&format!("chmod 755 {}", dir.display()));
        let workdir = Workdir(dir);
        workdir.install_collection();
        workdir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// `ansible-galaxy collection build` of ansible/, installed from the tarball it made.
    fn install_collection(&self) {
        let build = self.path("build");
        sh(&format!(
            "{} collection build {}/ansible --output-path {} --force",
            tool("ansible-galaxy"),
            env!("CARGO_MANIFEST_DIR"),
            build.display()
        ));
        sh(&format!(
            "{} collection install --offline {}/dockgate-dockgate-*.tar.gz -p {}",
            tool("ansible-galaxy"),
            build.display(),
            self.path("collections").display()
        ));
        sh(&format!("chmod -R a+rX {}", self.0.display()));
    }

    /// Writes `play` and runs it with `arguments`, through `prefix` (nothing, `sandbox-ctl
    /// systemd ` to run inside the nested systemd, or as_user()); whether it succeeded, and
    /// what ansible-playbook printed.
    fn play(&self, name: &str, play: &str, arguments: &str, prefix: &str) -> (bool, String) {
        let file = self.path(&format!("{name}.yml"));
        std::fs::write(&file, play).unwrap();
        sh(&format!("chmod 644 {}", file.display()));
        // Each user's own HOME and temp files: ansible writes there.
        let home = self.path(if prefix.starts_with("setpriv") {
            "home-user"
        } else {
            "home-root"
        });
        std::fs::create_dir_all(&home).unwrap();
        sh(&format!("chmod 1777 {}", home.display()));
        let started = Instant::now();
        let (ok, stdout, stderr) = try_sh(&format!(
            "{prefix}env HOME={home} ANSIBLE_COLLECTIONS_PATH={collections} \
             ANSIBLE_LOCAL_TEMP={home}/local ANSIBLE_REMOTE_TEMP={home}/remote \
             ANSIBLE_NOCOLOR=1 ANSIBLE_RETRY_FILES_ENABLED=0 \
             ANSIBLE_PYTHON_INTERPRETER=/usr/bin/python3 \
             {playbook} -i localhost, -c local {arguments} {file}",
            home = home.display(),
            collections = self.path("collections").display(),
            playbook = tool("ansible-playbook"),
            file = file.display(),
        ));
        eprintln!(
            "ansible-playbook {name} {arguments}: {:.1} s, {}",
            started.elapsed().as_secs_f64(),
            recap(&stdout).unwrap_or("no recap")
        );
        (ok, format!("{stdout}{stderr}"))
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The PLAY RECAP line of localhost.
fn recap(output: &str) -> Option<&str> {
    output
        .lines()
        .skip_while(|line| !line.starts_with("PLAY RECAP"))
        .find(|line| line.starts_with("localhost"))
}

/// `changed=N` of the recap.
fn changed(output: &str) -> u32 {
    recap(output)
        .and_then(|line| {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix("changed="))
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no recap in:\n{output}"))
}

/// The nested systemd, and what dockgated left in firewalld, go when the test ends.
struct Booted;

impl Drop for Booted {
    fn drop(&mut self) {
        let _ = systemd("systemctl stop dockgate.service");
        let _ = try_sh(&format!(
            "{DOCKGATED} --remove --config {CONFIG} --state-dir {STATE}"
        ));
        let _ = try_sh("sandbox-ctl stop systemd");
    }
}

/// The role's variables: `make install` from this checkout, with the binaries this test run
/// built, into the sandbox's /run; the units where the nested systemd loads them.
fn role_play(policy: &str, generated: &Path) -> String {
    let bin = Path::new(DOCKGATED).parent().unwrap();
    format!(
        "- hosts: localhost\n  gather_facts: false\n  roles:\n    - role: dockgate.dockgate.dockgate\n      vars:\n\
         \x20       dockgate_install: source\n\
         \x20       dockgate_source_dir: {manifest}\n\
         \x20       dockgate_make_variables:\n\
         \x20         BIN: {bin}\n\
         \x20         GENERATED: {generated}\n\
         \x20         PREFIX: {PREFIX}\n\
         \x20         UNITDIR: {SYSTEMD}/units\n\
         \x20       dockgate_bindir: {PREFIX}/bin\n{policy}",
        manifest = env!("CARGO_MANIFEST_DIR"),
        bin = bin.display(),
        generated = generated.display(),
    )
}

#[test]
fn the_role_installs_dockgate_and_puts_one_policy_in_force() {
    in_sandbox();
    for address in ["10.99.1.70", "10.99.1.71"] {
        add_client_address(1, address);
    }
    let _web = Container::httpd("ans-web", "-p 8080:80");
    let work = Workdir::new("ansible-role");
    sh("sandbox-ctl start systemd");
    let _booted = Booted;
    let play = role_play(
        "        dockgate_default: deny\n        dockgate_trusted: [10.99.1.70]\n        dockgate_refused: {per_second: 50}\n",
        &work.path("generated"),
    );
    let inside = "sandbox-ctl systemd ";

    // Before: Docker's behaviour, open to everyone.
    assert_eq!(probe_from("10.99.1.71", HOST_V4, 8080), "open");

    // First run: installed, configured, enabled, started; the policy is in force.
    let (ok, output) = work.play("role", &play, "", inside);
    assert!(ok, "{output}");
    assert!(changed(&output) >= 3, "{output}");
    assert!(Path::new(&format!("{PREFIX}/bin/dockgated")).is_file());
    assert_eq!(unit_property("ActiveState"), "active", "{}", journal());
    assert_eq!(
        systemd("systemctl is-enabled dockgate.service").1.trim(),
        "enabled"
    );
    let config = std::fs::read_to_string(CONFIG).unwrap();
    assert!(
        config.contains("default = \"deny\"")
            && config.contains("trusted = [\"10.99.1.70\"]")
            && config.contains("\n[refused]\nper_second = 50\n"),
        "{config}"
    );
    wait_for_rebuild_seen(journal);
    assert_eq!(
        probe_until_from("10.99.1.70", 8080, "open", Duration::from_secs(20)),
        "open",
        "the trusted source\n{}",
        journal()
    );
    assert_eq!(probe_from("10.99.1.71", HOST_V4, 8080), "dropped");
    assert_eq!(probe(HOST_V4, 8080), "dropped");
    let pid = unit_property("MainPID");

    // Second run: nothing to do.
    let (ok, output) = work.play("role", &play, "", inside);
    assert!(ok, "{output}");
    assert_eq!(changed(&output), 0, "{output}");

    // Check mode with another trusted source: says what it would change, changes nothing.
    let (ok, output) = work.play(
        "role",
        &play,
        "--check --diff -e '{\"dockgate_trusted\": [\"10.99.1.71\"]}'",
        inside,
    );
    assert!(ok, "{output}");
    assert_eq!(changed(&output), 1, "{output}");
    assert!(
        output.contains("-trusted = [\"10.99.1.70\"]")
            && output.contains("+trusted = [\"10.99.1.71\"]"),
        "the diff:\n{output}"
    );
    assert_eq!(std::fs::read_to_string(CONFIG).unwrap(), config);
    assert_eq!(probe_from("10.99.1.70", HOST_V4, 8080), "open");
    assert_eq!(probe_from("10.99.1.71", HOST_V4, 8080), "dropped");

    // A variable argument_specs refuses: the role stops before it does anything.
    let (ok, output) = work.play("role", &play, "-e dockgate_default=maybe", inside);
    assert!(!ok, "{output}");
    assert!(
        output.contains("dockgate_default") && output.contains("must be one of"),
        "{output}"
    );
    assert_eq!(std::fs::read_to_string(CONFIG).unwrap(), config);

    // A policy dockgatectl check-config refuses: the file and the policy in force stay.
    let (ok, output) = work.play(
        "role",
        &play,
        "-e '{\"dockgate_trusted\": [\"10.99.1.300\"]}'",
        inside,
    );
    assert!(!ok, "{output}");
    assert!(
        output.contains("failed to validate")
            && output.contains("trusted[0]: expected an IPv4/IPv6 address"),
        "{output}"
    );
    assert_eq!(std::fs::read_to_string(CONFIG).unwrap(), config);
    assert_eq!(unit_property("MainPID"), pid, "{}", journal());
    assert_eq!(probe_from("10.99.1.70", HOST_V4, 8080), "open");
    assert_eq!(probe_from("10.99.1.71", HOST_V4, 8080), "dropped");

    // A change for real: the handler has dockgated reload it, in force when the play ends.
    let (ok, output) = work.play(
        "role",
        &play,
        "-e '{\"dockgate_trusted\": [\"10.99.1.71\"]}'",
        inside,
    );
    assert!(ok, "{output}");
    assert!(output.contains("RUNNING HANDLER [dockgate.dockgate.dockgate : Reload dockgate]"));
    assert_eq!(
        probe_from("10.99.1.71", HOST_V4, 8080),
        "open",
        "{}",
        journal()
    );
    assert_eq!(probe_from("10.99.1.70", HOST_V4, 8080), "dropped");
    assert_eq!(unit_property("MainPID"), pid, "reloaded, not restarted");
}

/// A play of one task of the collection's modules, with dockgatectl where cargo built it.
fn module_play(tasks: &str) -> String {
    format!(
        "- hosts: localhost\n  gather_facts: false\n  module_defaults:\n\
         \x20   dockgate.dockgate.dockgate_exposure: {{executable: {DOCKGATECTL}}}\n\
         \x20   dockgate.dockgate.dockgate_info: {{executable: {DOCKGATECTL}}}\n\
         \x20 tasks:\n{tasks}"
    )
}

const EXPOSE: &str = "    - dockgate.dockgate.dockgate_exposure:\n        port: 8080/tcp\n        sources: [10.99.1.2]\n        comment: from ansible\n";

fn runtime_exposures() -> Vec<serde_json::Value> {
    let (ok, list, stderr) = dockgatectl("list --json");
    assert!(ok, "{stderr}");
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .filter(|exposure| exposure["origin"] == "runtime")
        .cloned()
        .collect()
}

#[test]
fn dockgate_exposure_adds_keeps_and_removes_an_exposure() {
    in_sandbox();
    let _web = Container::httpd("ans-mod-web", "-p 8080:80");
    let service = Service::start("ans-mod", "default = \"deny\"\n");
    service.wait_for_api();
    service.wait_until_settled();
    assert_eq!(
        probe_until(HOST_V4, 8080, "dropped", Duration::from_secs(15)),
        "dropped",
        "{}",
        service.log()
    );
    let work = Workdir::new("ansible-modules");

    let (ok, output) = work.play("expose", &module_play(EXPOSE), "--diff", "");
    assert!(ok, "{output}");
    assert_eq!(changed(&output), 1, "{output}");
    assert_eq!(probe(HOST_V4, 8080), "open", "{}", service.log());
    let made = runtime_exposures();
    assert_eq!(made.len(), 1, "{made:?}");
    assert_eq!(made[0]["comment"], "from ansible");

    // The same exposure, its source spelled another way: kept, nothing made.
    let again = EXPOSE.replace("[10.99.1.2]", "[\"10.99.1.2/32\"]");
    let (ok, output) = work.play("expose-again", &module_play(&again), "", "");
    assert!(ok, "{output}");
    assert_eq!(changed(&output), 0, "{output}");
    assert_eq!(runtime_exposures(), made);
    assert_eq!(probe(HOST_V4, 8080), "open");

    // dockgate_info: the status, the port and the exposure, as a play reads them.
    let info_file = work.path("info.json");
    let (ok, output) = work.play(
        "info",
        &module_play(&format!(
            "    - dockgate.dockgate.dockgate_info:\n      register: dockgate\n\
             \x20   - ansible.builtin.copy:\n        content: \"{{{{ dockgate | to_json }}}}\"\n        dest: {}\n",
            info_file.display()
        )),
        "",
        "",
    );
    assert!(ok, "{output}");
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&info_file).unwrap()).unwrap();
    assert_eq!(info["status"]["default"], "deny", "{info}");
    assert_eq!(info["status"]["firewalld_connected"], true, "{info}");
    let port = info["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|port| port["host_port"] == 8080 && port["host_ip"] == "0.0.0.0")
        .unwrap_or_else(|| panic!("{info}"));
    assert_eq!(port["state"], "exposed", "{info}");
    assert_eq!(info["exposures"][0]["id"], made[0]["id"], "{info}");

    // Check mode: it would remove it, and does not.
    let absent = EXPOSE.replace("comment: from ansible", "state: absent");
    let (ok, output) = work.play("unexpose", &module_play(&absent), "--check --diff", "");
    assert!(ok, "{output}");
    assert_eq!(changed(&output), 1, "{output}");
    assert!(
        output.contains(made[0]["id"].as_str().unwrap()),
        "the diff:\n{output}"
    );
    assert_eq!(runtime_exposures(), made);
    assert_eq!(probe(HOST_V4, 8080), "open");

    // Removed, and closed when the task returns; a second time there is nothing to remove.
    let (ok, output) = work.play("unexpose", &module_play(&absent), "", "");
    assert!(ok, "{output}");
    assert_eq!(changed(&output), 1, "{output}");
    assert_eq!(probe(HOST_V4, 8080), "dropped", "{}", service.log());
    assert!(runtime_exposures().is_empty());
    let (ok, output) = work.play("unexpose", &module_play(&absent), "", "");
    assert!(ok, "{output}");
    assert_eq!(changed(&output), 0, "{output}");

    // A user polkit does not let expose: the task fails with what dockgated answered, the
    // same line dockgatectl prints, and nothing opens.
    let user = TestUser::add("dgansible", 64021, &[]);
    let as_user = as_user(&user.name);
    let (_, _, refused) = try_sh(&format!(
        "{as_user}{DOCKGATECTL} list --json >/dev/null && {as_user}{DOCKGATECTL} expose 8080/tcp --from 10.99.1.2"
    ));
    let reason = refused
        .trim()
        .trim_start_matches("dockgatectl: ")
        .to_owned();
    assert!(reason.starts_with("NotAuthorized: "), "{refused}");
    let (ok, output) = work.play("expose-as-user", &module_play(EXPOSE), "", &as_user);
    assert!(!ok, "{output}");
    assert!(
        output.contains(&format!(
            "\"msg\": {}",
            serde_json::Value::from(reason.clone())
        )),
        "{reason:?} in\n{output}"
    );
    assert_eq!(probe(HOST_V4, 8080), "dropped");
    assert!(runtime_exposures().is_empty());
}
