//! The RPMs that rpm/ci/build made from rpm/dockgate.spec (in target/rpmbuild; feature
//! `rpm-tests`, which tests/run turns on after building them): the payloads of dockgate and
//! cockpit-dockgate together are what `make install` installs, with the same modes, the Cockpit
//! page all in cockpit-dockgate, and only the config marked %config(noreplace);
//! the scriptlets hand the unit to systemd; License: covers the license of every crate that is
//! linked in; every vendored crate is Provided as bundled(crate()); rpmlint, with Fedora's
//! configuration, finds no error and no warning that rpm/ci/rpmlintrc does not explain.
#![cfg(feature = "rpm-tests")]

mod installed;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use installed::{COCKPIT, INSTALLED};

fn manifest(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn rpmbuild_dir() -> PathBuf {
    let dir = manifest("target/rpmbuild");
    assert!(
        dir.join("build.log").is_file(),
        "no RPM build in {}: run rpm/ci/build first",
        dir.display()
    );
    dir
}

/// The binary RPM of package `dockgate`.
fn binary_rpm() -> PathBuf {
    built_rpm("dockgate", std::env::consts::ARCH)
}

/// The binary RPM of subpackage `cockpit-dockgate`.
fn cockpit_rpm() -> PathBuf {
    built_rpm("cockpit-dockgate", "noarch")
}

fn built_rpm(name: &str, arch: &str) -> PathBuf {
    let dir = rpmbuild_dir().join("RPMS").join(arch);
    let prefix = format!("{name}-{}-", env!("CARGO_PKG_VERSION"));
    let rpms: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            file.starts_with(&prefix) && file.ends_with(".rpm")
        })
        .collect();
    assert_eq!(rpms.len(), 1, "{name} in {}: {rpms:?}", dir.display());
    rpms[0].clone()
}

fn source_rpm() -> PathBuf {
    let dir = rpmbuild_dir().join("SRPMS");
    let name = format!("dockgate-{}-1.src.rpm", env!("CARGO_PKG_VERSION"));
    let path = dir.join(name);
    assert!(path.is_file(), "{}", path.display());
    path
}

fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("{program}: {error}"));
    assert!(
        output.status.success(),
        "{program} {args:?}:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn query(rpm: &Path, format: &str) -> String {
    run("rpm", &["-qp", "--qf", format, &rpm.display().to_string()])
}

/// What the RPM lists: path (without the leading /) -> (mode, file flags, owner, group).
fn file_list(rpm: &Path) -> BTreeMap<String, (u32, String, String, String)> {
    query(
        rpm,
        "[%{FILEMODES:octal} %{FILEFLAGS:fflags}. %{FILEUSERNAME} %{FILEGROUPNAME} %{FILENAMES}\n]",
    )
    .lines()
    .map(|line| {
        let fields: Vec<&str> = line.splitn(5, ' ').collect();
        let mode = u32::from_str_radix(fields[0], 8).unwrap() & 0o7777;
        let flags = fields[1].trim_end_matches('.').to_owned();
        let path = fields[4].trim_start_matches('/').to_owned();
        (
            path,
            (mode, flags, fields[2].to_owned(), fields[3].to_owned()),
        )
    })
    .collect()
}

/// Files the RPM has and `make install` does not, because rpm makes them itself: the
/// %license and %doc files, the directory of %doc, and the build-id links of the binaries.
fn rpm_only(path: &str) -> bool {
    path.starts_with("usr/lib/.build-id")
        || path.starts_with("usr/share/licenses/dockgate")
        || path.starts_with("usr/share/licenses/cockpit-dockgate")
        || path == "usr/share/doc/dockgate"
        || path == "usr/share/doc/dockgate/README.md"
        || path == "usr/share/doc/cockpit-dockgate"
        || path == "usr/share/doc/cockpit-dockgate/README.md"
}

/// rpmbuild compresses man pages (brp-compress); `make install` does not.
fn as_installed(path: &str) -> String {
    if path.starts_with("usr/share/man/") {
        path.trim_end_matches(".gz").to_owned()
    } else {
        path.to_owned()
    }
}

/// Every file of cockpit/dist, relative to it.
fn cockpit_page() -> BTreeSet<String> {
    let root = manifest("cockpit/dist");
    let mut found = BTreeSet::new();
    let mut todo = vec![root.clone()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                found.insert(path.strip_prefix(&root).unwrap().display().to_string());
            }
        }
    }
    found
}

#[test]
fn the_rpms_hold_what_make_install_installs_with_the_same_modes() {
    let daemon = file_list(&binary_rpm());
    let page = file_list(&cockpit_rpm());
    // The Cockpit page, and nothing else, is in cockpit-dockgate: cockpit/dist file for file
    // (its directories with it).
    let page_files: BTreeSet<String> = page
        .keys()
        .filter_map(|path| path.strip_prefix(COCKPIT))
        .filter(|file| !file.is_empty() && manifest("cockpit/dist").join(file).is_file())
        .map(str::to_owned)
        .collect();
    assert_eq!(page_files, cockpit_page());
    for (path, (mode, _, user, group)) in page.iter().filter(|(path, _)| !rpm_only(path)) {
        assert!(
            path.starts_with(COCKPIT.trim_end_matches('/')),
            "{path} in cockpit-dockgate"
        );
        assert!(*mode == 0o644 || *mode == 0o755, "{path}: {mode:o}");
        assert_eq!((user.as_str(), group.as_str()), ("root", "root"), "{path}");
    }
    assert!(!daemon.keys().any(|path| path.starts_with(COCKPIT)));

    let listed: BTreeMap<&String, &(u32, String, String, String)> =
        daemon.iter().chain(&page).collect();
    let packaged: BTreeMap<String, &(u32, String, String, String)> = listed
        .iter()
        .filter(|(path, _)| !rpm_only(path) && !path.starts_with(COCKPIT.trim_end_matches('/')))
        .map(|(path, entry)| (as_installed(path), *entry))
        .collect();
    let installed: BTreeMap<String, u32> = INSTALLED
        .iter()
        .filter(|(path, _)| !path.starts_with(COCKPIT))
        .map(|(path, mode)| (path.to_string(), *mode))
        .collect();
    let packaged_paths: BTreeSet<&String> = packaged.keys().collect();
    let installed_paths: BTreeSet<&String> = installed.keys().collect();
    assert_eq!(
        packaged_paths, installed_paths,
        "the RPM's payload and make install differ"
    );
    for (path, mode) in &installed {
        let (packaged_mode, _, user, group) = packaged[path];
        assert_eq!(
            *packaged_mode, *mode,
            "{path}: {packaged_mode:o} in the RPM"
        );
        assert_eq!((user.as_str(), group.as_str()), ("root", "root"), "{path}");
    }
    for path in daemon.keys() {
        if path.starts_with("usr/share/man/") && !path.ends_with('/') {
            assert!(path.ends_with(".gz"), "{path} is not compressed");
        }
    }
}

#[test]
fn cockpit_dockgate_declares_the_patternfly_it_bundles() {
    let lock = std::fs::read_to_string(manifest("cockpit/package-lock.json")).unwrap();
    let lock: serde_json::Value = serde_json::from_str(&lock).unwrap();
    let version = lock["packages"]["node_modules/@patternfly/patternfly"]["version"]
        .as_str()
        .expect("cockpit/package-lock.json pins @patternfly/patternfly");
    let rpm = cockpit_rpm();
    let provides = run("rpm", &["-qp", "--provides", &rpm.display().to_string()]);
    assert!(
        provides
            .lines()
            .any(|line| line == format!("bundled(npm(@patternfly/patternfly)) = {version}")),
        "{provides}"
    );
    assert_eq!(query(&rpm, "%{ARCH}"), "noarch");
    let requires = run("rpm", &["-qp", "--requires", &rpm.display().to_string()]);
    let release = query(&binary_rpm(), "%{VERSION}-%{RELEASE}");
    for needed in ["cockpit-bridge".to_owned(), format!("dockgate = {release}")] {
        assert!(
            requires.lines().any(|line| line == needed),
            "{needed}:\n{requires}"
        );
    }
    // Its own License: names the page's, PatternFly's and its fonts' licenses.
    let license = and_terms(&query(&rpm, "%{LICENSE}"));
    let patternfly = std::fs::read_to_string(manifest(
        "cockpit/node_modules/@patternfly/patternfly/package.json",
    ))
    .unwrap();
    let patternfly: serde_json::Value = serde_json::from_str(&patternfly).unwrap();
    let page: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(manifest("cockpit/package.json")).unwrap())
            .unwrap();
    for expression in [&page["license"], &patternfly["license"]] {
        for term in and_terms(expression.as_str().unwrap()) {
            assert!(license.contains(&term), "{term:?} not in {license:?}");
        }
    }
}

#[test]
fn only_the_config_is_config_and_it_is_noreplace() {
    let mut listed = file_list(&binary_rpm());
    listed.extend(file_list(&cockpit_rpm()));
    let configs: Vec<(&String, &String)> = listed
        .iter()
        .filter(|(_, (_, flags, _, _))| flags.contains('c'))
        .map(|(path, (_, flags, _, _))| (path, flags))
        .collect();
    assert_eq!(configs.len(), 1, "{configs:?}");
    let (path, flags) = configs[0];
    assert_eq!(path, "etc/dockgate/dockgate.toml");
    assert!(flags.contains('n'), "not noreplace: {flags}");
    let (_, flags, _, _) = &listed["usr/share/licenses/dockgate/LICENSE.dependencies"];
    assert!(
        flags.contains('l'),
        "LICENSE.dependencies is not %license: {flags}"
    );
    let (_, flags, _, _) = &listed["usr/share/doc/dockgate/README.md"];
    assert!(flags.contains('d'), "README.md is not %doc: {flags}");
}

/// The payload as files, unpacked the way an admin looks into an RPM; once per test run, next
/// to the RPM (rpm/ci/build starts target/rpmbuild afresh).
fn unpacked() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = rpmbuild_dir().join("payload");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let status = Command::new("bash")
            .arg("-c")
            .arg("rpm2cpio \"$1\" | cpio -idm --quiet")
            .arg("bash")
            .arg(binary_rpm())
            .current_dir(&dir)
            .status()
            .expect("bash, rpm2cpio and cpio run");
        assert!(status.success());
        dir
    })
}

#[test]
fn the_payload_is_the_repositorys_files_and_its_binaries_run() {
    let root = unpacked();
    for (packaged, source) in [
        (
            "usr/lib/systemd/system/dockgate.service",
            "systemd/dockgate.service",
        ),
        (
            "usr/lib/systemd/system/docker.service.d/dockgate.conf",
            "systemd/docker.service.d/dockgate.conf",
        ),
        ("etc/dockgate/dockgate.toml", "config/dockgate.toml"),
        (
            "usr/share/dbus-1/system.d/org.dockgate.Dockgate1.conf",
            "dbus/org.dockgate.Dockgate1.conf",
        ),
        (
            "usr/share/polkit-1/actions/org.dockgate.Dockgate1.policy",
            "polkit/org.dockgate.Dockgate1.policy",
        ),
    ] {
        assert_eq!(
            std::fs::read(root.join(packaged)).unwrap(),
            std::fs::read(manifest(source)).unwrap(),
            "{packaged}"
        );
    }
    let ctl = root.join("usr/bin/dockgatectl").display().to_string();
    let version = run(&ctl, &["--version"]);
    assert_eq!(
        version.trim(),
        format!("dockgate {}", env!("CARGO_PKG_VERSION"))
    );
    let config = root
        .join("etc/dockgate/dockgate.toml")
        .display()
        .to_string();
    let checked = run(&ctl, &["check-config", &config]);
    assert!(checked.contains("default allow"), "{checked}");
    for page in [
        "usr/share/man/man1/dockgatectl.1.gz",
        "usr/share/man/man5/dockgate.toml.5.gz",
        "usr/share/man/man8/dockgated.8.gz",
    ] {
        let output = Command::new("man")
            .args(["--warnings", "-l"])
            .arg(root.join(page))
            .env("LC_ALL", "C")
            .output()
            .unwrap();
        assert!(
            output.status.success() && output.stderr.is_empty(),
            "{page}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn the_scriptlets_hand_the_unit_to_systemd() {
    let rpm = binary_rpm();
    let scripts = run("rpm", &["-qp", "--scripts", &rpm.display().to_string()]);
    for (scriptlet, call) in [
        ("postinstall", "install-system-units dockgate.service"),
        ("preuninstall", "remove-system-units dockgate.service"),
        (
            "postuninstall",
            "mark-restart-system-units dockgate.service",
        ),
    ] {
        let body: String = scripts
            .split(&format!("{scriptlet} scriptlet"))
            .nth(1)
            .unwrap_or_else(|| panic!("no {scriptlet} scriptlet in:\n{scripts}"))
            .lines()
            .take_while(|line| !line.ends_with("scriptlet (using /bin/sh):"))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            body.contains(&format!("/usr/lib/systemd/systemd-update-helper {call}")),
            "{scriptlet}:\n{body}"
        );
    }
    // Erased (not upgraded), the package gives the host back before its files go.
    let preun = scripts
        .split("preuninstall scriptlet")
        .nth(1)
        .unwrap_or_default();
    let remove = preun
        .find("/usr/bin/dockgated --remove")
        .unwrap_or_else(|| panic!("no dockgated --remove in:\n{preun}"));
    assert!(
        preun[..remove].contains("if [ $1 -eq 0 ]; then"),
        "only on erase:\n{preun}"
    );
    // Erased (not upgraded), the package gives the host back before its files go.
    let preun = scripts
        .split("preuninstall scriptlet")
        .nth(1)
        .unwrap_or_default();
    let remove = preun
        .find("/usr/bin/dockgated --remove")
        .unwrap_or_else(|| panic!("no dockgated --remove in:\n{preun}"));
    assert!(
        preun[..remove].contains("if [ $1 -eq 0 ]; then"),
        "only on erase:\n{preun}"
    );
    let requires = run("rpm", &["-qp", "--requires", &rpm.display().to_string()]);
    for needed in ["firewalld", "polkit", "dbus-common", "systemd"] {
        assert!(
            requires.lines().any(|line| line.trim() == needed),
            "{needed} not required:\n{requires}"
        );
    }
}

/// The terms of a license expression's top-level AND, each as the set of its alternatives:
/// "A AND (B OR C)" -> {A}, {B, C}.
fn and_terms(expression: &str) -> BTreeSet<BTreeSet<String>> {
    let mut terms = Vec::new();
    let mut depth = 0;
    let mut current = String::new();
    let words: Vec<&str> = expression.split_whitespace().collect();
    for word in words {
        let opens = word.matches('(').count() as i32;
        let closes = word.matches(')').count() as i32;
        if word == "AND" && depth == 0 {
            terms.push(std::mem::take(&mut current));
            continue;
        }
        depth += opens - closes;
        current.push_str(word);
        current.push(' ');
    }
    terms.push(current);
    terms
        .iter()
        .map(|term| {
            let inner = term.trim();
            let inner = inner
                .strip_prefix('(')
                .and_then(|rest| rest.strip_suffix(')'))
                .unwrap_or(inner);
            inner
                .split(" OR ")
                .map(|alt| alt.trim().to_owned())
                .collect()
        })
        .collect()
}

#[test]
fn the_license_covers_every_linked_crate() {
    let log = std::fs::read_to_string(rpmbuild_dir().join("build.log")).unwrap();
    let summary: Vec<&str> = log
        .lines()
        .skip_while(|line| *line != "### BEGIN LICENSE SUMMARY ###")
        .skip(1)
        .take_while(|line| *line != "###  END LICENSE SUMMARY  ###")
        .collect();
    assert!(summary.len() >= 5, "no %cargo_license_summary in the log");
    for rpm in [binary_rpm(), source_rpm()] {
        let license = query(&rpm, "%{LICENSE}");
        let declared = and_terms(&license);
        for line in &summary {
            let expression = line.trim_start_matches("# ");
            for term in and_terms(expression) {
                assert!(
                    declared.contains(&term),
                    "{}: License: lacks {term:?} (from {expression:?}):\n{license}",
                    rpm.display()
                );
            }
        }
    }
}

#[test]
fn every_vendored_crate_is_provided_as_bundled() {
    let vendored =
        std::fs::read_to_string(unpacked().join("usr/share/licenses/dockgate/cargo-vendor.txt"))
            .unwrap();
    let provides = run(
        "rpm",
        &["-qp", "--provides", &binary_rpm().display().to_string()],
    );
    let bundled: BTreeSet<&str> = provides
        .lines()
        .filter(|line| line.starts_with("bundled(crate("))
        .collect();
    let mut names = BTreeSet::new();
    for line in vendored.lines() {
        let (name, version) = line.split_once(" v").unwrap();
        // SemVer as RPM has it: no build metadata, "~" before a pre-release, which has "_"
        // for "-".
        let version = version.split('+').next().unwrap();
        let version = match version.split_once('-') {
            Some((release, pre)) => format!("{release}~{}", pre.replace('-', "_")),
            None => version.to_owned(),
        };
        let provide = format!("bundled(crate({name})) = {version}");
        assert!(bundled.contains(provide.as_str()), "{provide} not provided");
        names.insert(name.to_owned());
    }
    assert_eq!(bundled.len(), vendored.lines().count());
    // Every crate linked into the binaries (LICENSE.dependencies: "LICENSE: NAME vVERSION")
    // is among them, and every one is a crate of Cargo.lock, so of Source1's vendor/.
    let linked = std::fs::read_to_string(
        unpacked().join("usr/share/licenses/dockgate/LICENSE.dependencies"),
    )
    .unwrap();
    let mut count = 0;
    for line in linked.lines() {
        let crate_version = line.rsplit(": ").next().unwrap();
        let name = crate_version.split(" v").next().unwrap();
        if name == "dockgate" {
            continue;
        }
        assert!(
            names.contains(name),
            "{name} is linked but not Provided as bundled"
        );
        count += 1;
    }
    assert!(count > 50, "only {count} crates in LICENSE.dependencies");
    let lock = std::fs::read_to_string(manifest("Cargo.lock")).unwrap();
    let lock: toml::Value = toml::from_str(&lock).unwrap();
    let locked: BTreeSet<(&str, &str)> = lock["package"]
        .as_array()
        .unwrap()
        .iter()
        .map(|package| {
            (
                package["name"].as_str().unwrap(),
                package["version"].as_str().unwrap(),
            )
        })
        .collect();
    for line in vendored.lines() {
        let (name, version) = line.split_once(" v").unwrap();
        assert!(
            locked.contains(&(name, version)),
            "{line} is not in Cargo.lock"
        );
    }
}

#[test]
fn the_source_rpm_carries_the_spec_and_both_tarballs() {
    let version = env!("CARGO_PKG_VERSION");
    let files = run("rpm", &["-qpl", &source_rpm().display().to_string()]);
    let files: BTreeSet<&str> = files.lines().collect();
    let expected: BTreeSet<String> = [
        "dockgate.spec".to_owned(),
        format!("dockgate-{version}.tar.gz"),
        format!("dockgate-{version}-vendor.tar.gz"),
    ]
    .into();
    assert_eq!(
        files,
        expected.iter().map(String::as_str).collect::<BTreeSet<_>>()
    );
    // Source0 carries the built Cockpit page, so that rpmbuild needs no npm.
    let tarball = rpmbuild_dir().join(format!("SOURCES/dockgate-{version}.tar.gz"));
    let listing = if tarball.is_file() {
        run("tar", &["-tzf", &tarball.display().to_string()])
    } else {
        run(
            "bash",
            &[
                "-c",
                "rpm2cpio \"$1\" | cpio -i --quiet --to-stdout \"$2\" | tar -tzf -",
                "bash",
                &source_rpm().display().to_string(),
                &format!("dockgate-{version}.tar.gz"),
            ],
        )
    };
    for file in cockpit_page() {
        let path = format!("dockgate-{version}/cockpit/dist/{file}");
        assert!(
            listing.lines().any(|line| line == path),
            "{path} not in Source0"
        );
    }
}

/// rpmlint's output: the packages checked and its closing counts line.
fn rpmlint(rpmlintrc: Option<&Path>) -> String {
    let config = Path::new(
        &std::env::var("DOCKGATE_RPM_TOOLS").unwrap_or("/var/cache/dockgate/rpm-tools".into()),
    )
    .join("rpmlint-2.4.0/configs/Fedora");
    assert!(
        config.is_dir(),
        "{}: run tests/install-deps",
        config.display()
    );
    let mut command = Command::new("rpmlint");
    command.arg("--config").arg(&config);
    if let Some(file) = rpmlintrc {
        command.arg("--rpmlintrc").arg(file);
    }
    command
        .arg(manifest("rpm/dockgate.spec"))
        .arg(source_rpm())
        .arg(binary_rpm())
        .arg(cockpit_rpm());
    let output = command
        .output()
        .expect("rpmlint (package rpmlint) is installed");
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

#[test]
fn rpmlint_with_fedoras_configuration_finds_nothing_unexplained() {
    let raw = rpmlint(None);
    let closing = |output: &str| {
        output
            .lines()
            .find(|line| line.contains(" errors, ") && line.contains(" warnings"))
            .unwrap_or_else(|| panic!("no counts line in:\n{output}"))
            .trim()
            .to_owned()
    };
    eprintln!("rpmlint, Fedora's configuration: {}", closing(&raw));
    assert!(closing(&raw).contains(" 0 errors, "), "{raw}");
    // rpm/ci/rpmlintrc says why each warning that is left may stay; rpmlint itself complains
    // about a filter that matches nothing, so none outlives its warning.
    let filtered = rpmlint(Some(&manifest("rpm/ci/rpmlintrc")));
    eprintln!("with rpm/ci/rpmlintrc: {}", closing(&filtered));
    assert!(
        closing(&filtered).contains(" 0 errors, 0 warnings"),
        "{filtered}"
    );
}
