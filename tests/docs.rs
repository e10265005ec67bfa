//! The man pages and shell completions as `make build` generates them (examples/gen-docs.rs)
//! and as man and the shells read them: man renders every page without a warning, each page
//! has every option of its command line and dockgate.toml(5) every key of the config, and the
//! completions load and offer the subcommands and their options.

#[path = "../examples/gen-docs.rs"]
#[allow(dead_code)] // main() belongs to the example; these tests call generate()
mod gen_docs;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use clap::CommandFactory;
use dockgate::cli::{dockgatectl, dockgated};
use dockgate::config::Config;

/// Generated once per test process, as `make docs` would.
fn generated() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("dockgate-docs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        gen_docs::generate(&dir).expect("the generator writes the pages and completions");
        dir
    })
}

fn manifest(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The page as `man` shows it, in ASCII, without hyphenation or justification, so that an
/// option is one string on one line; fails on any warning man or groff prints.
fn render(page: &Path) -> String {
    let output = Command::new("man")
        .args(["--warnings", "--nh", "--nj", "-l"])
        .arg(page)
        .env("LC_ALL", "C")
        .env("MANWIDTH", "200")
        .env("MAN_KEEP_FORMATTING", "")
        .output()
        .expect("man (package man-db) is installed");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stderr.trim().is_empty(),
        "man --warnings -l {}:\n{stderr}",
        page.display()
    );
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        text.lines().count() > 20,
        "{} renders as:\n{text}",
        page.display()
    );
    text
}

/// The lines of one part of a rendered page: from the heading line (`NAME` for a section,
/// `   name` for a subsection) to the next heading at the same or a higher level.
fn part<'a>(text: &'a str, heading: &str) -> Vec<&'a str> {
    let level = heading.len() - heading.trim_start().len();
    let is_heading = |line: &str| {
        let indent = line.len() - line.trim_start().len();
        !line.trim().is_empty() && indent <= level && (indent == 0 || indent == 3)
    };
    let mut lines = text.lines().skip_while(|line| *line != heading);
    let Some(first) = lines.next() else {
        panic!("no heading {heading:?} in:\n{text}");
    };
    std::iter::once(first)
        .chain(lines.take_while(|line| !is_heading(line)))
        .collect()
}

/// How a man page names an argument: `--long`, or a positional's `<NAME>` / `[NAME]`.
fn spelled(arg: &clap::Arg) -> String {
    match arg.get_long() {
        Some(long) => format!("--{long}"),
        None => {
            let name = arg
                .get_value_names()
                .and_then(|names| names.first())
                .map(|name| name.to_string())
                .unwrap_or_else(|| arg.get_id().to_string().to_uppercase());
            if arg.is_required_set() {
                format!("<{name}>")
            } else {
                format!("[{name}]")
            }
        }
    }
}

/// `arg` has its own paragraph in `lines`: a line that starts with its name (the tag), and
/// its help text.
fn assert_described(lines: &[&str], arg: &clap::Arg, what: &str) {
    let name = spelled(arg);
    let tag = match arg.get_short() {
        Some(short) => format!("-{short}, {name}"),
        None => name.clone(),
    };
    assert!(
        lines
            .iter()
            .any(|line| line.trim_start().starts_with(&tag) && line.starts_with("       ")),
        "{name} has no paragraph of its own in {what}:\n{}",
        lines.join("\n")
    );
    let help = arg
        .get_help()
        .unwrap_or_else(|| panic!("{name} of {what} has no help text"))
        .to_string();
    let start: String = help.chars().take(24).collect();
    assert!(
        lines.join(" ").contains(&start),
        "the help of {name} ({start:?}) is not in {what}:\n{}",
        lines.join("\n")
    );
}

/// Every argument of `cmd` is described in OPTIONS, and each subcommand's own arguments in
/// its part of COMMANDS, with what the subcommand does.
fn assert_every_option_in(page: &str, cmd: &clap::Command) {
    let options = part(page, "OPTIONS");
    for arg in cmd.get_arguments().filter(|arg| !arg.is_hide_set()) {
        assert_described(&options, arg, "OPTIONS");
    }
    assert!(
        cmd.get_subcommands().count() > 0,
        "{} has no subcommands",
        cmd.get_name()
    );
    for sub in cmd.get_subcommands() {
        let heading = format!("   {}", sub.get_name());
        let lines = part(page, &heading);
        for arg in sub
            .get_arguments()
            .filter(|arg| !arg.is_hide_set() && !arg.is_global_set() && arg.get_id() != "help")
        {
            assert_described(&lines, arg, &heading);
        }
        let about = sub.get_about().expect("every subcommand says what it does");
        let start: String = about.to_string().chars().take(24).collect();
        assert!(
            lines.join(" ").contains(&start),
            "{start:?} in:\n{}",
            lines.join("\n")
        );
    }
}

#[test]
fn dockgatectl_1_has_every_command_and_option() {
    let page = render(&generated().join("man/dockgatectl.1"));
    assert!(page.starts_with("DOCKGATECTL(1)"), "{page}");
    let cmd = gen_docs::command(dockgatectl::Cli::command(), "dockgatectl");
    assert_every_option_in(&page, &cmd);
    for section in ["AUTHORIZATION", "EXIT STATUS", "FILES", "SEE ALSO"] {
        part(&page, section);
    }
    let see_also = part(&page, "SEE ALSO").join(" ");
    assert!(see_also.contains("dockgated(8)") && see_also.contains("dockgate.toml(5)"));
}

#[test]
fn dockgated_8_has_every_command_and_option() {
    let page = render(&generated().join("man/dockgated.8"));
    assert!(page.starts_with("DOCKGATED(8)"), "{page}");
    let cmd = gen_docs::command(dockgated::Cli::command(), "dockgated");
    assert_every_option_in(&page, &cmd);
    for section in ["SERVICE", "SIGNALS", "ENVIRONMENT", "EXIT STATUS", "FILES"] {
        part(&page, section);
    }
    let see_also = part(&page, "SEE ALSO").join(" ");
    assert!(see_also.contains("dockgatectl(1)") && see_also.contains("dockgate.toml(5)"));
}

/// Every key a config can have: those of a default config (its optional keys are there as
/// nulls) and those of an exposure (from the sample with every key set).
fn config_keys() -> Vec<(Option<String>, String)> {
    let mut keys = Vec::new();
    let default = serde_json::to_value(Config::default()).unwrap();
    for (key, value) in default.as_object().unwrap() {
        keys.push((None, key.clone()));
        if let Some(table) = value.as_object() {
            let name = format!("[{key}]");
            keys.extend(
                table
                    .keys()
                    .map(|inner| (Some(name.clone()), inner.clone())),
            );
        }
    }
    let full = Config::load(&manifest("tests/configs/good/full.toml")).unwrap();
    let full = serde_json::to_value(full).unwrap();
    let exposure = full["expose"][0].as_object().unwrap();
    keys.extend(
        exposure
            .keys()
            .map(|key| (Some("[[expose]]".to_owned()), key.clone())),
    );
    keys
}

#[test]
fn dockgate_toml_5_describes_every_key() {
    let page = render(&manifest("docs/dockgate.toml.5"));
    let keys = config_keys();
    assert!(keys.len() >= 13, "{keys:?}");
    for (table, key) in keys {
        let section = match table.as_deref() {
            None => "TOP-LEVEL KEYS".to_owned(),
            Some("[[expose]]") => "THE [[expose]] TABLES".to_owned(),
            Some(table) => format!("THE {table} TABLE"),
        };
        let lines = part(&page, &section);
        // A key is the tag of its own paragraph: indented 7, its first word.
        let tagged = lines.iter().any(|line| {
            line.starts_with("       ") && line.split_whitespace().next() == Some(key.as_str())
        });
        if table.is_none() && matches!(key.as_str(), "zone" | "limits" | "refused" | "expose") {
            continue; // the tables themselves have sections of their own
        }
        assert!(
            tagged,
            "{key} has no paragraph in {section}:\n{}",
            lines.join("\n")
        );
    }
}

#[test]
fn dockgate_toml_5_names_this_version() {
    let source = std::fs::read_to_string(manifest("docs/dockgate.toml.5")).unwrap();
    let title = source
        .lines()
        .find(|line| line.starts_with(".TH "))
        .expect("a .TH line");
    assert!(
        title.contains(&format!("\"dockgate {}\"", env!("CARGO_PKG_VERSION"))),
        "docs/dockgate.toml.5 says {title:?}; Cargo.toml says {}",
        env!("CARGO_PKG_VERSION")
    );
}

fn subcommand_names(cmd: &clap::Command) -> Vec<String> {
    cmd.get_subcommands()
        .map(|sub| sub.get_name().to_owned())
        .collect()
}

/// What bash offers for `words` (the last one being completed), with the completion loaded as
/// bash-completion would load it.
fn bash_completes(binary: &str, words: &[&str]) -> Vec<String> {
    let script = generated().join("completions/bash").join(binary);
    let words: Vec<String> = words.iter().map(|word| format!("'{word}'")).collect();
    let program = format!(
        r#"source "$1" || exit 1
        spec=$(complete -p {binary}) || exit 1
        function=$(sed -n 's/.* -F \([^ ]*\) .*/\1/p' <<<"$spec")
        COMP_WORDS=({words})
        COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
        COMP_LINE="${{COMP_WORDS[*]}}"
        COMP_POINT=${{#COMP_LINE}}
        "$function" {binary} "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
        printf '%s\n' "${{COMPREPLY[@]}}""#,
        words = words.join(" ")
    );
    let output = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program, "bash"])
        .arg(&script)
        .output()
        .expect("bash runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn bash_completes_the_subcommands_and_their_options() {
    let ctl = gen_docs::command(dockgatectl::Cli::command(), "dockgatectl");
    let offered = bash_completes("dockgatectl", &["dockgatectl", ""]);
    for name in subcommand_names(&ctl) {
        assert!(offered.contains(&name), "{name} not offered: {offered:?}");
    }
    let offered = bash_completes("dockgatectl", &["dockgatectl", "expose", "--"]);
    for option in ["--from", "--for", "--container", "--comment", "--json"] {
        assert!(offered.iter().any(|o| o == option), "{option}: {offered:?}");
    }
    let offered = bash_completes("dockgated", &["dockgated", ""]);
    assert!(offered.contains(&"inspect".to_owned()), "{offered:?}");
    let offered = bash_completes("dockgated", &["dockgated", "--"]);
    for option in ["--once", "--remove", "--config", "--state-dir"] {
        assert!(offered.iter().any(|o| o == option), "{option}: {offered:?}");
    }
}

#[test]
fn fish_completes_the_subcommands() {
    let ctl = gen_docs::command(dockgatectl::Cli::command(), "dockgatectl");
    let script = generated().join("completions/fish/dockgatectl.fish");
    let complete = |line: &str| {
        let output = Command::new("fish")
            .args([
                "--no-config",
                "-c",
                "source $argv[1]; and complete -C $argv[2]",
            ])
            .arg(&script)
            .arg(line)
            .output()
            .expect("fish (package fish) is installed");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|line| line.split('\t').next().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
    };
    let offered = complete("dockgatectl ");
    for name in subcommand_names(&ctl) {
        assert!(offered.contains(&name), "{name} not offered: {offered:?}");
    }
    let offered = complete("dockgatectl expose --");
    assert!(offered.contains(&"--from".to_owned()), "{offered:?}");
}

#[test]
fn zsh_loads_the_completion_functions() {
    for binary in ["dockgatectl", "dockgated"] {
        let dir = generated().join("completions/zsh");
        // compinit finds _NAME in fpath by its #compdef line, as it does in site-functions.
        let program = format!(
            "fpath=({dir} $fpath); autoload -Uz compinit; compinit -u -D; \
             [[ $_comps[{binary}] == _{binary} ]] && autoload +X _{binary} && whence -w _{binary}",
            dir = dir.display()
        );
        let output = Command::new("zsh")
            .args(["-f", "-c", &program])
            .output()
            .expect("zsh (package zsh) is installed");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("function"),
            "{binary}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
