//! Writes the man pages dockgated(8) and dockgatectl(1) and the bash, zsh and fish completions
//! of both binaries into the directory given, from the clap definitions in `src/cli/` that the
//! binaries parse. `make build` runs it (so does rpm/dockgate.spec, offline); it is not
//! installed. dockgate.toml(5) is written by hand (`docs/dockgate.toml.5`): it documents a
//! file, not a command line.
//!
//!     cargo run --example gen-docs -- target/generated
//!
//! clap_mangen writes one page per subcommand (`dockgatectl-expose(1)`, ...), but an admin
//! looks up `man dockgatectl` as with systemctl(1) or firewall-cmd(1). So each page here is
//! clap_mangen's sections of the command followed by a COMMANDS section assembled from
//! clap_mangen's synopsis, description and options of every subcommand, and the sections only
//! a person can write (files, exit status, signals), in roff through the `roff` crate.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use clap::CommandFactory;
use clap_complete::Shell;
use clap_mangen::Man;
use dockgate::cli::{dockgatectl, dockgated};
use roff::{Roff, bold, roman};

fn main() -> io::Result<()> {
    let Some(out) = std::env::args_os().nth(1) else {
        eprintln!("usage: gen-docs OUTPUT_DIR");
        std::process::exit(2);
    };
    generate(Path::new(&out))
}

/// `man/dockgatectl.1`, `man/dockgated.8` and `completions/{bash,zsh,fish}/...` under `out`.
pub fn generate(out: &Path) -> io::Result<()> {
    let ctl = command(dockgatectl::Cli::command(), "dockgatectl");
    let daemon = command(dockgated::Cli::command(), "dockgated");

    fs::create_dir_all(out.join("man"))?;
    fs::write(
        out.join("man/dockgatectl.1"),
        page(&ctl, "1", DOCKGATECTL, &dockgatectl_sections())?,
    )?;
    fs::write(
        out.join("man/dockgated.8"),
        page(&daemon, "8", DOCKGATED, &dockgated_sections())?,
    )?;

    for mut cmd in [ctl, daemon] {
        let name = cmd.get_name().to_owned();
        for (shell, file) in [
            (Shell::Bash, format!("bash/{name}")),
            (Shell::Zsh, format!("zsh/_{name}")),
            (Shell::Fish, format!("fish/{name}.fish")),
        ] {
            let path = out.join("completions").join(file);
            fs::create_dir_all(path.parent().unwrap())?;
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, &name, &mut script);
            fs::write(path, script)?;
        }
    }
    Ok(())
}

/// The binary's own name: the derive takes the package's ("dockgate") unless told otherwise,
/// and at run time clap uses argv[0] instead, which the pages and completions have not got.
pub fn command(cmd: clap::Command, name: &'static str) -> clap::Command {
    let mut cmd = cmd.name(name).bin_name(name).disable_help_subcommand(true);
    cmd.build();
    cmd
}

fn page(
    cmd: &clap::Command,
    section: &str,
    description: &[&str],
    extra: &[(&str, Roff)],
) -> io::Result<Vec<u8>> {
    let man = Man::new(cmd.clone())
        .title(cmd.get_name().to_uppercase())
        .section(section)
        .date(build_date())
        .source(format!("dockgate {}", env!("CARGO_PKG_VERSION")))
        .manual("dockgate");
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    // Instead of clap_mangen's description, which only repeats the NAME line.
    let mut more = Roff::new();
    more.control("SH", ["DESCRIPTION"]);
    out.extend(more.render().into_bytes());
    out.extend(paragraphs(description).render().into_bytes());
    man.render_options_section(&mut out)?;
    let subcommands: Vec<&clap::Command> = cmd.get_subcommands().collect();
    if !subcommands.is_empty() {
        writeln!(out, ".SH COMMANDS")?;
        for sub in subcommands {
            subcommand(&mut out, sub)?;
        }
    }
    for (heading, body) in extra {
        let mut roff = Roff::new();
        roff.control("SH", [*heading]);
        out.extend(roff.render().into_bytes());
        out.extend(body.render().into_bytes());
    }
    Ok(without_repeated_preambles(&out))
}

/// One subcommand under COMMANDS: its synopsis as the heading, its description, its own
/// options (the global ones and --help are in OPTIONS already).
fn subcommand(out: &mut Vec<u8>, sub: &clap::Command) -> io::Result<()> {
    let mut sub = sub.clone();
    let globals: Vec<String> = sub
        .get_arguments()
        .filter(|arg| arg.is_global_set() || arg.get_id() == "help")
        .map(|arg| arg.get_id().to_string())
        .collect();
    for id in globals {
        sub = sub.mut_arg(id, |arg| arg.hide(true));
    }
    let man = Man::new(sub.clone());
    let mut synopsis = Vec::new();
    man.render_synopsis_section(&mut synopsis)?;
    let mut heading = Roff::new();
    heading.control("SS", [sub.get_name()]);
    out.extend(heading.render().into_bytes());
    out.extend(retitled(&synopsis, ".SH SYNOPSIS\n", "")?);
    let mut description = Vec::new();
    man.render_description_section(&mut description)?;
    out.extend(retitled(&description, ".SH DESCRIPTION", ".PP")?);
    if sub.get_arguments().any(|arg| !arg.is_hide_set()) {
        let mut options = Vec::new();
        man.render_options_section(&mut options)?;
        out.extend(retitled(&options, ".SH OPTIONS\n", "")?);
    }
    Ok(())
}

/// clap_mangen's section with its `.SH` line replaced: a subcommand's sections are parts of
/// the page's COMMANDS section.
fn retitled(section: &[u8], heading: &str, with: &str) -> io::Result<Vec<u8>> {
    let text = String::from_utf8(section.to_vec()).map_err(io::Error::other)?;
    if !text.contains(heading) {
        return Err(io::Error::other(format!(
            "clap_mangen's section has no {heading:?}:\n{text}"
        )));
    }
    Ok(text.replacen(heading, with, 1).into_bytes())
}

/// Every render of the `roff` crate starts with the same two-line string definition; once is
/// enough.
fn without_repeated_preambles(page: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(page);
    let mut seen = std::collections::HashSet::new();
    let mut out = String::new();
    for line in text.lines() {
        let preamble = line.starts_with(".ie \\n(.g .ds Aq") || line.starts_with(".el .ds Aq");
        if preamble && !seen.insert(line.to_owned()) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.into_bytes()
}

/// The day the pages were made, for their footer: SOURCE_DATE_EPOCH when the build sets it
/// (rpmbuild does, from the changelog), so that the same source makes the same pages.
fn build_date() -> String {
    let when = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|epoch| epoch.parse().ok())
        .map(|epoch| std::time::UNIX_EPOCH + std::time::Duration::from_secs(epoch))
        .unwrap_or_else(std::time::SystemTime::now);
    humantime::format_rfc3339_seconds(when).to_string()[..10].to_owned()
}

const DOCKGATECTL: &[&str] = &[
    "dockgatectl is the admin's command line for dockgate, the daemon that keeps the ports \
     Docker publishes behind an explicit exposure policy on a host with firewalld. It shows \
     the published ports and who may reach them, opens a port to some sources for a while \
     (a runtime exposure) and closes it again, explains why a connection would or would not \
     get through, and checks config files.",
    "Output is a table for people, or JSON with --json for scripts. Runtime exposures are \
     kept by dockgated in /var/lib/dockgate and survive restarts; exposures in the config \
     file are read-only at run time.",
];

const DOCKGATED: &[&str] = &[
    "dockgated makes the ports that Docker publishes obey an explicit exposure policy on a \
     host that runs firewalld: a new connection from outside to a published port reaches \
     the container only if its source is trusted or an exposure of that host port lists \
     it. It works through firewalld's D-Bus API only, keeps Docker's bridges in the zone the \
     admin chose, and lets authorized users change exposures at run time over D-Bus, gated \
     by polkit (see dockgatectl(1)).",
];

/// Paragraphs of plain text, with `.PP` between them.
fn paragraphs(texts: &[&str]) -> Roff {
    let mut roff = Roff::new();
    for (i, text) in texts.iter().enumerate() {
        if i > 0 {
            roff.control("PP", []);
        }
        roff.text([roman(*text)]);
    }
    roff
}

/// A tagged list: each item's tag in bold, then its text.
fn items(entries: &[(&str, &str)]) -> Roff {
    let mut roff = Roff::new();
    for (tag, text) in entries {
        roff.control("TP", []);
        roff.text([bold(*tag)]);
        roff.text([roman(*text)]);
    }
    roff
}

fn see_also(pages: &[(&str, &str)]) -> Roff {
    let mut roff = Roff::new();
    let mut line = Vec::new();
    for (i, (name, section)) in pages.iter().enumerate() {
        if i > 0 {
            line.push(roman(", "));
        }
        line.push(bold(*name));
        line.push(roman(format!("({section})")));
    }
    roff.text(line);
    roff
}

const FILES: &[(&str, &str)] = &[
    (
        "/etc/dockgate/dockgate.toml",
        "The policy: external interfaces, the default for published ports nobody exposed, \
         trusted sources, zone docker's settings and the exposures of the config. See \
         dockgate.toml(5).",
    ),
    (
        "/var/lib/dockgate/",
        "What dockgate must remember, readable only by root: exposures.json (runtime \
         exposures with their owner and expiry), zone-docker.json (zone docker's settings as \
         dockgate found them), bound-bridges.json (the bridges it bound to another zone) and \
         firewalld-cleanup-on-exit.json (firewalld's CleanupOnExit as the admin had it).",
    ),
];

fn dockgatectl_sections() -> Vec<(&'static str, Roff)> {
    let authorization = paragraphs(&[
        "Every command but check-config and docker-prestart calls dockgated over the system \
         bus (org.dockgate.Dockgate1), and dockgated asks polkit whether the caller may: \
         status, ports, list and explain need the action org.dockgate.Dockgate1.read, expose \
         and unexpose need org.dockgate.Dockgate1.expose, reconcile and reload need \
         org.dockgate.Dockgate1.admin. Root is always allowed. Removing an exposure that \
         another user made needs org.dockgate.Dockgate1.admin.",
        "Run in a terminal by someone other than root, dockgatectl starts polkit's text agent \
         (pkttyagent) for the length of the call, so that an action that needs a password asks \
         for it there. Without a terminal, polkit answers without asking.",
        "An example rules file that lets group dockgate read and expose without a password is \
         installed in /usr/share/doc/dockgate (50-dockgate.rules.example).",
    ]);
    vec![
        ("AUTHORIZATION", authorization),
        (
            "EXIT STATUS",
            paragraphs(&[
                "0 when the command did what it was asked; 1 on any error, with one line on \
                 standard error that says why (for a refusal by dockgated, the D-Bus error's \
                 short name and message, e.g. \"NotAuthorized: ...\" or \"InvalidArgument: \
                 sources[1]: ...\"). check-config exits 1 on the first mistake in the file and \
                 names its file, line and key. Usage errors exit 2.",
            ]),
        ),
        ("FILES", items(FILES)),
        (
            "SEE ALSO",
            see_also(&[
                ("dockgated", "8"),
                ("dockgate.toml", "5"),
                ("firewall-cmd", "1"),
                ("pkttyagent", "1"),
                ("polkit", "8"),
            ]),
        ),
    ]
}

fn dockgated_sections() -> Vec<(&'static str, Roff)> {
    vec![
        (
            "SERVICE",
            paragraphs(&[
                "Without --once, --remove or a command, dockgated is the service that \
                 dockgate.service (Type=dbus) runs: it applies the policy, keeps it applied \
                 through firewalld reloads and restarts and Docker restarts, and serves the \
                 D-Bus API org.dockgate.Dockgate1 on the system bus. It takes its bus name \
                 only after the first attempt to apply the policy, so once the name is there \
                 the policy is in force, or firewalld was found down.",
                "Every rule dockgate adds to firewalld's direct configuration carries the \
                 comment \"dockgate\" and lives in both firewalld's runtime and permanent \
                 layers; dockgate never removes a rule that is not its own.",
            ]),
        ),
        (
            "SIGNALS",
            items(&[
                (
                    "SIGHUP",
                    "Read the config again (systemctl reload dockgate). A bad config is \
                     logged with its file, line and key, and the policy in force stays.",
                ),
                (
                    "SIGTERM, SIGINT",
                    "Exit and leave every rule in place, so that published ports stay \
                     closed (fail closed). dockgated --remove takes the rules out.",
                ),
            ]),
        ),
        (
            "ENVIRONMENT",
            items(&[
                (
                    "RUST_LOG",
                    "Which log lines to write, e.g. \"debug\" or \"dockgate=debug\"; the \
                     default is \"info\".",
                ),
                (
                    "JOURNAL_STREAM",
                    "Set by systemd when standard error is the journal: each line then \
                     carries its syslog priority, so that journalctl -p warning shows only \
                     warnings and errors.",
                ),
            ]),
        ),
        (
            "EXIT STATUS",
            paragraphs(&[
                "0 on success (for the service: after SIGTERM or SIGINT). 1 when the config \
                 or the state cannot be read, the system bus or firewalld cannot be reached \
                 by --once or --remove, or inspect could not see everything; the reason is \
                 on standard error. Usage errors exit 2.",
            ]),
        ),
        ("FILES", items(FILES)),
        (
            "SEE ALSO",
            see_also(&[
                ("dockgatectl", "1"),
                ("dockgate.toml", "5"),
                ("firewalld", "1"),
                ("firewall-cmd", "1"),
                ("systemctl", "1"),
            ]),
        ),
    ]
}
