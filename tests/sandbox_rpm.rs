//! The binary RPM's payload, unpacked with rpm2cpio, run by the sandbox's real systemd: the
//! packaged dockgate.service starts the packaged dockgated with the packaged default config,
//! the packaged bus policy and polkit actions in place, and the packaged dockgatectl talks to
//! it. The default config lets everyone through and adds no rule; a deny config with one
//! exposure, and one more exposure over D-Bus, are then enforced (packets).
//! Needs the RPM from rpm/ci/build (feature `rpm-tests`) and the sandbox (`sandbox-tests`).
#![cfg(all(feature = "sandbox-tests", feature = "rpm-tests"))]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;

const SYSTEMD: &str = "/run/sandbox/systemd";
/// The payload, where the nested systemd's services see it (ProtectHome= and PrivateTmp= hide
/// /root and /tmp); `sandbox-ctl stop systemd` removes it with the rest of /run/sandbox/systemd.
const PAYLOAD: &str = "/run/sandbox/systemd/rpm-root";
/// /etc/dockgate/dockgate.toml and /var/lib/dockgate as the nested systemd's services see them.
const CONFIG: &str = "/run/sandbox/systemd/etc-dockgate/dockgate.toml";
const STATE: &str = "/run/sandbox/systemd/var-lib/dockgate";
const RELOAD_BUS: &str = "busctl --system call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus ReloadConfig";

fn binary_rpm() -> PathBuf {
    let pattern = format!(
        "{}/target/rpmbuild/RPMS/*/dockgate-{}-*.rpm",
        env!("CARGO_MANIFEST_DIR"),
        env!("CARGO_PKG_VERSION")
    );
    let found = sh(&format!("ls {pattern} 2>/dev/null || true"));
    let rpms: Vec<&str> = found.lines().collect();
    assert_eq!(
        rpms.len(),
        1,
        "{pattern}: {rpms:?} (run rpm/ci/build first)"
    );
    PathBuf::from(rpms[0])
}

fn property(name: &str) -> String {
    sh(&format!("busctl --system get-property {API} {name}"))
        .trim()
        .to_owned()
}

/// dockgate's rules in the kernel, both families, every table.
fn dockgate_rules() -> usize {
    sh("iptables-save; ip6tables-save")
        .lines()
        .filter(|line| line.starts_with('-') && line.contains("dockgate"))
        .count()
}

/// The unit stopped, the packaged dockgated's rules out, the nested systemd gone.
struct Booted;

impl Drop for Booted {
    fn drop(&mut self) {
        let _ = systemd("systemctl stop dockgate.service");
        let _ = try_sh(&format!(
            "{PAYLOAD}/usr/bin/dockgated --remove --config {CONFIG} --state-dir {STATE}"
        ));
        let _ = try_sh("sandbox-ctl stop systemd");
    }
}

/// The package's files where a Fedora host has them: the unit in systemd's unit path (only
/// ExecStart differs, by a drop-in: the binary is in the payload, not in /usr/bin), the
/// config in /etc/dockgate, the bus policy and polkit actions in the sandbox's private copies
/// of the bus's and polkit's directories.
fn install_payload(rpm: &std::path::Path) {
    sh(&format!(
        "mkdir -p {PAYLOAD} && cd {PAYLOAD} && rpm2cpio {} | cpio -idm --quiet",
        rpm.display()
    ));
    let units = format!("{SYSTEMD}/units");
    std::fs::copy(
        format!("{PAYLOAD}/usr/lib/systemd/system/dockgate.service"),
        format!("{units}/dockgate.service"),
    )
    .unwrap();
    std::fs::create_dir_all(format!("{units}/dockgate.service.d")).unwrap();
    std::fs::write(
        format!("{units}/dockgate.service.d/payload.conf"),
        format!("[Service]\nExecStart=\nExecStart={PAYLOAD}/usr/bin/dockgated\n"),
    )
    .unwrap();
    std::fs::copy(format!("{PAYLOAD}/etc/dockgate/dockgate.toml"), CONFIG).unwrap();
    std::fs::copy(
        format!("{PAYLOAD}/usr/share/dbus-1/system.d/org.dockgate.Dockgate1.conf"),
        "/etc/dbus-1/system.d/org.dockgate.Dockgate1.conf",
    )
    .unwrap();
    std::fs::copy(
        format!("{PAYLOAD}/usr/share/polkit-1/actions/org.dockgate.Dockgate1.policy"),
        "/usr/share/polkit-1/actions/org.dockgate.Dockgate1.policy",
    )
    .unwrap();
    sh(RELOAD_BUS);
    sh("sandbox-ctl systemd systemctl daemon-reload");
}

#[test]
fn the_packaged_files_run_under_systemd_and_enforce_the_policy() {
    in_sandbox();
    let rpm = binary_rpm();
    for address in ["10.99.1.60", "10.99.1.61", "10.99.1.62"] {
        add_client_address(1, address);
    }
    let _web = Container::httpd("rpm-web", "-p 8080:80");
    sh("sandbox-ctl start systemd");
    let _booted = Booted;
    install_payload(&rpm);
    let ctl = format!("{PAYLOAD}/usr/bin/dockgatectl");

    let (ok, _, stderr) = systemd("systemctl start dockgate.service");
    assert!(ok, "systemctl start: {stderr}\n{}", journal());
    assert_eq!(unit_property("ActiveState"), "active", "{}", journal());
    assert!(
        eventually(Duration::from_secs(20), || journal()
            .contains("reconciled trigger=")),
        "no reconcile:\n{}",
        journal()
    );
    assert!(journal().contains("dockgated started config=/etc/dockgate/dockgate.toml"));

    // The config as installed: Docker's behaviour, reported, no rule added.
    assert_eq!(property("Default"), "s \"allow\"");
    assert_eq!(property("RuleCount"), "u 0");
    assert_eq!(dockgate_rules(), 0, "{}", sh("iptables-save"));
    for source in ["10.99.1.60", "10.99.1.62"] {
        assert_eq!(probe_from(source, HOST_V4, 8080), "open", "{source}");
    }
    let ports = sh(&format!("{ctl} ports --json"));
    assert!(
        ports.contains("\"host_port\":8080") && ports.contains("\"state\":\"open\""),
        "{ports}"
    );

    // Deny, with one exposure in the config.
    std::fs::write(
        CONFIG,
        "default = \"deny\"\n\n[[expose]]\nport = \"8080/tcp\"\nfrom = [\"10.99.1.60\"]\n",
    )
    .unwrap();
    let (ok, _, stderr) = systemd("systemctl reload dockgate.service");
    assert!(ok, "systemctl reload: {stderr}");
    wait_for_rebuild_seen(journal);
    assert!(
        eventually(Duration::from_secs(30), || probe_from(
            "10.99.1.60",
            HOST_V4,
            8080
        ) == "open"
            && probe_from("10.99.1.62", HOST_V4, 8080) == "dropped"),
        "the deny config with its exposure is not in force:\n{}",
        journal()
    );
    assert_eq!(property("Default"), "s \"deny\"");
    assert!(dockgate_rules() > 0);

    // One more source, at run time, over D-Bus, by the packaged dockgatectl.
    let id = sh(&format!("{ctl} expose 8080/tcp --from 10.99.1.61 --for 1h"));
    assert!(id.trim().starts_with("runtime-"), "{id}");
    assert_eq!(probe_from("10.99.1.61", HOST_V4, 8080), "open");
    assert_eq!(probe_from("10.99.1.62", HOST_V4, 8080), "dropped");
    let explained = sh(&format!("{ctl} explain 10.99.1.62 8080/tcp"));
    assert!(explained.starts_with("denied:"), "{explained}");
    // StateDirectory= of the packaged unit, as the package owns it: root's only.
    assert_eq!(sh(&format!("stat -c %a {STATE}")).trim(), "700");
    assert!(
        std::fs::read_to_string(format!("{STATE}/exposures.json"))
            .unwrap()
            .contains("10.99.1.61")
    );

    let (ok, _, stderr) = systemd("systemctl stop dockgate.service");
    assert!(ok, "systemctl stop: {stderr}");
    assert_eq!(unit_property("Result"), "success", "{}", journal());
    assert_eq!(
        probe_from("10.99.1.62", HOST_V4, 8080),
        "dropped",
        "rules after stop"
    );
}

/// firewalld.conf's CleanupOnExit as firewalld's config API reports it.
fn cleanup_on_exit() -> String {
    sh("busctl --system get-property org.fedoraproject.FirewallD1 \
        /org/fedoraproject/FirewallD1/config org.fedoraproject.FirewallD1.config CleanupOnExit")
    .trim()
    .to_owned()
}

/// Direct rules and chains of both of firewalld's layers that are dockgate's.
fn dockgate_direct_config() -> String {
    sh(
        "firewall-cmd --direct --get-all-chains; firewall-cmd --direct --get-all-rules; \
        firewall-cmd --permanent --direct --get-all-chains; \
        firewall-cmd --permanent --direct --get-all-rules",
    )
    .lines()
    .filter(|line| line.contains("dockgate") || line.contains("DOCKGATE"))
    .collect::<Vec<_>>()
    .join("\n")
}

/// Issue 18, finding 6: erasing the package (not upgrading it) gives the host back. Before,
/// the unit stopped and the rest stayed: dockgate's rules in firewalld's permanent config,
/// CleanupOnExit=no, the bridges bound to the `bind` zone, and with the docker.service drop-in
/// gone, dockerd's next start failed (ZONE_CONFLICT).
#[test]
fn erasing_the_package_gives_the_host_back() {
    in_sandbox();
    let rpm = binary_rpm();
    let _web = Container::httpd("rpm-erase-web", "-p 8080:80 --restart always");
    let cleanup_before = cleanup_on_exit();
    sh("sandbox-ctl start systemd");
    let _booted = Booted;
    install_payload(&rpm);
    std::fs::write(
        CONFIG,
        "default = \"deny\"\n\n[zone]\nbind = \"internal\"\n",
    )
    .unwrap();
    let (ok, _, stderr) = systemd("systemctl start dockgate.service");
    assert!(ok, "systemctl start: {stderr}\n{}", journal());
    assert!(
        eventually(Duration::from_secs(20), || zone_now("docker0")
            == "internal"),
        "docker0 was not bound:\n{}",
        journal()
    );
    sh(&format!(
        "{PAYLOAD}/usr/bin/dockgatectl expose 8080/tcp --from 10.99.1.2 --for 1h"
    ));
    sh(&format!("{PAYLOAD}/usr/bin/dockgatectl unexpose runtime-1"));
    assert_eq!(probe(HOST_V4, 8080), "dropped");
    assert!(dockgate_rules() > 0 && !dockgate_direct_config().is_empty());
    assert_ne!(
        cleanup_on_exit(),
        cleanup_before,
        "dockgate turned CleanupOnExit off"
    );

    // rpm -e: systemd-update-helper (Fedora's; Debian has none) stops and disables the unit,
    // then the rest of the package's %preun runs with $1 = 0, in the host's namespaces (here:
    // the nested systemd's, where /var/lib is the unit's), the packaged binary standing in for
    // /usr/bin's.
    let (ok, _, stderr) = systemd("systemctl disable --now dockgate.service");
    assert!(ok, "{stderr}");
    let preun = sh(&format!(
        "rpm -qp --queryformat '%{{PREUN}}' {}",
        rpm.display()
    ))
    .replace(
        "/usr/bin/dockgated",
        &format!("{PAYLOAD}/usr/bin/dockgated"),
    );
    std::fs::write(format!("{SYSTEMD}/preun.sh"), &preun).unwrap();
    let (ok, out, err) = systemd(&format!("sh {SYSTEMD}/preun.sh 0"));
    assert!(ok, "%preun: {out}{err}");

    assert_eq!(dockgate_rules(), 0, "{}", sh("iptables-save"));
    assert_eq!(
        dockgate_direct_config(),
        "",
        "dockgate's direct config is gone"
    );
    assert_eq!(
        cleanup_on_exit(),
        cleanup_before,
        "CleanupOnExit given back"
    );
    assert_eq!(
        zone_now("docker0"),
        "docker",
        "the bridges back in zone docker"
    );
    // Docker restarts as before dockgate, and the published port follows Docker's defaults.
    sh("sandbox-ctl restart dockerd");
    assert_eq!(
        probe_until(HOST_V4, 8080, "open", Duration::from_secs(15)),
        "open",
        "the published port is Docker's again"
    );
}
