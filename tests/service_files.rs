//! The files dockgate installs for systemd, checked by systemd's own tools.

use std::process::Command;

/// The unit with ExecStart pointing at the binary cargo built (verify wants it to exist).
fn unit_for_this_build() -> std::path::PathBuf {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/dockgate.service"
    ))
    .unwrap()
    .replace("/usr/bin/dockgated", env!("CARGO_BIN_EXE_dockgated"));
    let dir = std::env::temp_dir().join(format!("dockgate-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("dockgate.service");
    std::fs::write(&path, unit).unwrap();
    path
}

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    let unit = unit_for_this_build();
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze (package systemd) is installed");
    let complaints = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && complaints.trim().is_empty(),
        "{complaints}"
    );
}

#[test]
fn the_unit_is_hardened() {
    let unit = unit_for_this_build();
    let output = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=20"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze (package systemd) is installed");
    let report = String::from_utf8_lossy(&output.stdout);
    let score: f64 = report
        .lines()
        .find_map(|line| {
            line.split("Overall exposure level for dockgate.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|score| score.parse().ok())
        .unwrap_or_else(|| panic!("no score in:\n{report}"));
    println!("systemd-analyze security: exposure {score}");
    assert!(score <= 2.0, "exposure {score}:\n{report}");
}

#[test]
fn make_install_puts_every_file_where_rhel_expects_it() {
    let destdir = std::env::temp_dir().join(format!("dockgate-install-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&destdir);
    // The debug binaries cargo built for this test run.
    let profile_dir = std::path::Path::new(env!("CARGO_BIN_EXE_dockgated"))
        .parent()
        .unwrap()
        .to_owned();
    let output = Command::new("make")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("install")
        .arg(format!("DESTDIR={}", destdir.display()))
        .arg(format!("BIN={}", profile_dir.display()))
        .output()
        .expect("make is installed");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for (path, mode) in [
        ("usr/bin/dockgated", 0o755),
        ("usr/bin/dockgatectl", 0o755),
        ("usr/lib/systemd/system/dockgate.service", 0o644),
        (
            "usr/lib/systemd/system/docker.service.d/dockgate.conf",
            0o644,
        ),
        (
            "usr/share/dbus-1/system.d/org.dockgate.Dockgate1.conf",
            0o644,
        ),
        (
            "usr/share/dbus-1/system-services/org.dockgate.Dockgate1.service",
            0o644,
        ),
        (
            "usr/share/dbus-1/interfaces/org.dockgate.Dockgate1.xml",
            0o644,
        ),
        (
            "usr/share/polkit-1/actions/org.dockgate.Dockgate1.policy",
            0o644,
        ),
        ("usr/share/doc/dockgate/50-dockgate.rules.example", 0o644),
        (
            "usr/share/doc/dockgate/60-dockgate-web-team.rules.example",
            0o644,
        ),
        // The Cockpit page as `make cockpit` built it, PatternFly's CSS and fonts with it.
        ("usr/share/cockpit/dockgate/manifest.json", 0o644),
        ("usr/share/cockpit/dockgate/index.html", 0o644),
        ("usr/share/cockpit/dockgate/index.js", 0o644),
        ("usr/share/cockpit/dockgate/patternfly.css", 0o644),
        (
            "usr/share/cockpit/dockgate/assets/fonts/RedHatText/RedHatTextVF.woff2",
            0o644,
        ),
    ] {
        use std::os::unix::fs::PermissionsExt;
        let metadata =
            std::fs::metadata(destdir.join(path)).unwrap_or_else(|error| panic!("{path}: {error}"));
        assert_eq!(metadata.permissions().mode() & 0o777, mode, "{path}");
    }
    assert!(destdir.join("etc/dockgate").is_dir());
    std::fs::remove_dir_all(&destdir).unwrap();
}
