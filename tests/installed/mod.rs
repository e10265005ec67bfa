//! What `make install` installs, for the test of `make install` itself (tests/service_files.rs)
//! and for the comparison of the RPM's payload with it (tests/rpm_package.rs).

/// Every file and directory `make install` makes (directories only where the package owns
/// them), with its mode.
pub const INSTALLED: &[(&str, u32)] = &[
    ("usr/bin/dockgated", 0o755),
    ("usr/bin/dockgatectl", 0o755),
    ("usr/lib/systemd/system/dockgate.service", 0o644),
    ("usr/lib/systemd/system/dockgate-metrics.service", 0o644),
    ("usr/lib/systemd/system/dockgate-metrics.timer", 0o644),
    ("usr/lib/systemd/system/docker.service.d", 0o755),
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
    ("usr/share/man/man1/dockgatectl.1", 0o644),
    ("usr/share/man/man5/dockgate.toml.5", 0o644),
    ("usr/share/man/man8/dockgated.8", 0o644),
    ("usr/share/bash-completion/completions/dockgatectl", 0o644),
    ("usr/share/bash-completion/completions/dockgated", 0o644),
    ("usr/share/zsh/site-functions/_dockgatectl", 0o644),
    ("usr/share/zsh/site-functions/_dockgated", 0o644),
    (
        "usr/share/fish/vendor_completions.d/dockgatectl.fish",
        0o644,
    ),
    ("usr/share/fish/vendor_completions.d/dockgated.fish", 0o644),
    ("etc/dockgate", 0o755),
    ("etc/dockgate/dockgate.toml", 0o644),
    ("var/lib/dockgate", 0o700),
    // The Cockpit page as `make cockpit` built it, PatternFly's CSS and fonts with it (the
    // rest of the directory is checked as a whole, see COCKPIT).
    ("usr/share/cockpit/dockgate/manifest.json", 0o644),
    ("usr/share/cockpit/dockgate/index.html", 0o644),
    ("usr/share/cockpit/dockgate/index.js", 0o644),
    ("usr/share/cockpit/dockgate/patternfly.css", 0o644),
    (
        "usr/share/cockpit/dockgate/assets/fonts/RedHatText/RedHatTextVF.woff2",
        0o644,
    ),
];

/// Everything under it is `make cockpit`'s output, cockpit/dist, file for file.
pub const COCKPIT: &str = "usr/share/cockpit/dockgate/";
