//! The sample configs in tests/configs: every bad one is refused with the file, line and key
//! its first line announces, every good one loads, and `dockgatectl check-config` says so.
//!
//! A bad file starts with `# expect: <line>: <key>: <part of the message>`.

use std::path::{Path, PathBuf};
use std::process::Command;

use dockgate::config::{Config, ConfigError};

fn samples(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/configs")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    files
}

struct Expected {
    line: usize,
    key: String,
    message: String,
}

fn expected(file: &Path) -> Expected {
    let text = std::fs::read_to_string(file).unwrap();
    let first = text.lines().next().unwrap_or_default();
    let parts: Vec<&str> = first
        .strip_prefix("# expect: ")
        .map(|rest| rest.splitn(3, ": ").collect())
        .unwrap_or_default();
    let [line, key, message] = parts[..] else {
        panic!(
            "{}: the first line must be `# expect: <line>: <key>: <message>`",
            file.display()
        );
    };
    Expected {
        line: line.parse().unwrap(),
        key: key.to_owned(),
        message: message.to_owned(),
    }
}

#[test]
fn bad_configs_are_refused_with_file_line_and_key() {
    let files = samples("bad");
    assert!(files.len() >= 14, "only {} bad samples", files.len());
    for file in files {
        let want = expected(&file);
        match Config::load(&file) {
            Err(ConfigError::Invalid {
                path,
                line,
                key,
                message,
            }) => {
                assert_eq!(path, file);
                assert_eq!(
                    (line, key.as_str()),
                    (want.line, want.key.as_str()),
                    "{}: {message}",
                    file.display()
                );
                assert!(
                    message.contains(&want.message),
                    "{}: {message:?} does not contain {:?}",
                    file.display(),
                    want.message
                );
            }
            other => panic!("{}: expected Invalid, got {other:?}", file.display()),
        }
    }
}

#[test]
fn good_configs_load() {
    let files = samples("good");
    assert!(!files.is_empty());
    for file in files {
        if let Err(err) = Config::load(&file) {
            panic!("{err}");
        }
    }
}

fn check_config(file: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dockgatectl"))
        .arg("check-config")
        .arg(file)
        .output()
        .unwrap()
}

#[test]
fn check_config_accepts_a_good_file() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs/good/full.toml");
    let output = check_config(&file);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        format!(
            "{}: OK (1 exposure, 5 trusted sources, default deny, verdict drop)\n",
            file.display()
        )
    );
    assert!(output.stderr.is_empty());
}

#[test]
fn check_config_refuses_a_bad_file_in_one_line() {
    let file =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs/bad/port-missing-protocol.toml");
    let output = check_config(&file);
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    assert_eq!(
        String::from_utf8(output.stderr).unwrap(),
        format!(
            "dockgatectl: {}:7: expose[1].port: expected a port or range with a protocol, like \
             \"443/tcp\" or \"8000-8010/tcp\"; got \"443\"\n",
            file.display()
        )
    );
}

#[test]
fn check_config_refuses_a_missing_file() {
    let output = check_config(Path::new("/nonexistent/dockgate.toml"));
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.starts_with("dockgatectl: cannot read /nonexistent/dockgate.toml: "),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1);
}

/// config/dockgate.toml, installed as /etc/dockgate/dockgate.toml by `make install` and the
/// RPM: it must change nothing on a fresh install.
#[test]
fn the_installed_config_changes_nothing() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/dockgate.toml");
    let config = Config::load(&file).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(config.default, dockgate::config::DefaultPolicy::Allow);
    assert!(config.trusted.is_empty() && config.expose.is_empty());
    assert!(config.external_interfaces.is_empty());
    assert_eq!(config.zone, dockgate::config::ZoneSettings::default());
    assert!(check_config(&file).status.success());
}

/// The commented-out examples in config/dockgate.toml (`#key = ...`, `#[table]`; prose has a
/// space after the `#`) are valid too: an admin who takes out the `#` gets a file dockgated
/// accepts.
#[test]
fn the_installed_configs_examples_are_valid() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/dockgate.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    let uncommented: String = text
        .lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c == '[' || c.is_ascii_lowercase()) => rest,
            _ => line,
        })
        .map(|line| format!("{line}\n"))
        .collect();
    let examples = uncommented.lines().filter(|l| !l.starts_with('#')).count();
    assert!(
        examples >= 14,
        "only {examples} lines of settings:\n{uncommented}"
    );
    let config = Config::parse(&uncommented, &file).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(config.expose.len(), 1);
    assert_eq!(config.zone.bind.as_deref(), Some("internal"));
}
