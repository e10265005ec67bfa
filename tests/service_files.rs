//! The files dockgate installs, checked by systemd's own tools, and `make install`.

#[path = "../examples/gen-docs.rs"]
#[allow(dead_code)] // main() belongs to the example; these tests call generate()
mod gen_docs;
mod installed;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use installed::{COCKPIT, INSTALLED};

/// The man pages as `make install` puts them under MANDIR, so that `man` (and with it
/// `systemd-analyze verify`, which checks the unit's Documentation=) finds them on MANPATH.
fn man_path() -> PathBuf {
    let generated = std::env::temp_dir().join(format!("dockgate-unit-docs-{}", std::process::id()));
    gen_docs::generate(&generated).unwrap();
    let man = generated.join("share/man");
    for (page, section) in [
        (generated.join("man/dockgated.8"), "man8"),
        (generated.join("man/dockgatectl.1"), "man1"),
        (
            Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/dockgate.toml.5"),
            "man5",
        ),
    ] {
        std::fs::create_dir_all(man.join(section)).unwrap();
        std::fs::copy(&page, man.join(section).join(page.file_name().unwrap())).unwrap();
    }
    man
}

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
        .env("MANPATH", man_path())
        .output()
        .expect("systemd-analyze (package systemd) is installed");
    let complaints = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && complaints.trim().is_empty(),
        "{complaints}"
    );
}

/// The metrics timer and its service, with ExecStart pointing at the dockgatectl cargo built.
#[test]
fn the_metrics_timer_and_service_pass_systemd_analyze_verify() {
    let dir = std::env::temp_dir().join(format!("dockgate-metrics-units-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
    let service = std::fs::read_to_string(repo.join("dockgate-metrics.service"))
        .unwrap()
        .replace("/usr/bin/dockgatectl", env!("CARGO_BIN_EXE_dockgatectl"));
    std::fs::write(dir.join("dockgate-metrics.service"), service).unwrap();
    std::fs::copy(
        repo.join("dockgate-metrics.timer"),
        dir.join("dockgate-metrics.timer"),
    )
    .unwrap();
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.join("dockgate-metrics.service"))
        .arg(dir.join("dockgate-metrics.timer"))
        .env("MANPATH", man_path())
        .output()
        .expect("systemd-analyze (package systemd) is installed");
    let complaints = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && complaints.trim().is_empty(),
        "{complaints}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
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

/// `make install` into a new DESTDIR with the debug binaries of this test run and the pages
/// and completions generated from them; returns DESTDIR.
fn make_install(name: &str, variables: &[&str]) -> PathBuf {
    let destdir = std::env::temp_dir().join(format!("dockgate-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&destdir);
    gen_docs::generate(&destdir.with_extension("generated")).unwrap();
    install_into(&destdir, variables);
    destdir
}

fn install_into(destdir: &Path, variables: &[&str]) {
    let profile_dir = Path::new(env!("CARGO_BIN_EXE_dockgated")).parent().unwrap();
    let output = Command::new("make")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("install")
        .arg(format!("DESTDIR={}", destdir.display()))
        .arg(format!("BIN={}", profile_dir.display()))
        .arg(format!(
            "GENERATED={}",
            destdir.with_extension("generated").display()
        ))
        .args(variables)
        .output()
        .expect("make is installed");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Every file under `root`, as paths relative to it, directories that hold no file included.
fn tree(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut todo = vec![root.to_owned()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let relative = path.strip_prefix(root).unwrap().display().to_string();
            if path.is_dir() {
                todo.push(path.clone());
                if std::fs::read_dir(&path).unwrap().next().is_none() {
                    found.push(relative);
                }
            } else {
                found.push(relative);
            }
        }
    }
    found.sort();
    found
}

#[test]
fn make_install_puts_every_file_where_rhel_expects_it() {
    let destdir = make_install("install", &[]);
    for (path, mode) in INSTALLED {
        let metadata =
            std::fs::metadata(destdir.join(path)).unwrap_or_else(|error| panic!("{path}: {error}"));
        assert_eq!(metadata.permissions().mode() & 0o777, *mode, "{path}");
    }
    // Nothing else: every file installed is in the list, or is one of the Cockpit page's.
    let listed: Vec<&str> = INSTALLED.iter().map(|(path, _)| *path).collect();
    let page = tree(&Path::new(env!("CARGO_MANIFEST_DIR")).join("cockpit/dist"));
    for path in tree(&destdir) {
        match path.strip_prefix(COCKPIT) {
            Some(file) => assert!(
                page.contains(&file.to_owned()),
                "{path} is not cockpit/dist's"
            ),
            None => assert!(
                listed.contains(&path.as_str()),
                "{path} is installed but not listed"
            ),
        }
    }
    // With BINDIR=/usr/bin the unit is the file in the repository, byte for byte.
    assert_eq!(
        std::fs::read(destdir.join("usr/lib/systemd/system/dockgate.service")).unwrap(),
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/dockgate.service"))
            .unwrap()
    );
    assert_eq!(
        std::fs::read(destdir.join("etc/dockgate/dockgate.toml")).unwrap(),
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/dockgate.toml")).unwrap()
    );
    std::fs::remove_dir_all(&destdir).unwrap();
    std::fs::remove_dir_all(destdir.with_extension("generated")).unwrap();
}

#[test]
fn make_install_keeps_an_admins_config() {
    let destdir = make_install("install-again", &[]);
    let config = destdir.join("etc/dockgate/dockgate.toml");
    std::fs::write(&config, "default = \"deny\"\n").unwrap();
    install_into(&destdir, &[]);
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        "default = \"deny\"\n"
    );
    std::fs::remove_dir_all(&destdir).unwrap();
    std::fs::remove_dir_all(destdir.with_extension("generated")).unwrap();
}

#[test]
fn make_install_follows_bindir_into_the_units() {
    let destdir = make_install("install-local", &["PREFIX=/usr/local"]);
    let unit =
        std::fs::read_to_string(destdir.join("usr/local/lib/systemd/system/dockgate.service"))
            .unwrap();
    assert!(
        unit.contains("\nExecStart=/usr/local/bin/dockgated\n"),
        "{unit}"
    );
    let dropin = std::fs::read_to_string(
        destdir.join("usr/local/lib/systemd/system/docker.service.d/dockgate.conf"),
    )
    .unwrap();
    assert!(
        dropin.contains("/usr/local/bin/dockgatectl docker-prestart"),
        "{dropin}"
    );
    assert!(destdir.join("usr/local/bin/dockgated").is_file());
    assert!(
        destdir
            .join("usr/local/share/man/man8/dockgated.8")
            .is_file()
    );
    std::fs::remove_dir_all(&destdir).unwrap();
    std::fs::remove_dir_all(destdir.with_extension("generated")).unwrap();
}
