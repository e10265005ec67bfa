//! `dockgatectl suggest`: the policy that would admit exactly what the refused-connections
//! table recorded, as TOML for dockgate.toml, with comments giving the counts and times, for an
//! admin to review and paste. Pure, so that "check-config accepts it, and it admits exactly
//! what was recorded" is a generated test.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;

use crate::config::PortRange;
use crate::docker::Protocol;
use crate::refused::Entry;

/// A source recorded at this many ports or more is suggested as trusted (admitted to every
/// port) rather than listed in each exposure.
pub const TRUSTED_FROM_PORTS: usize = 3;

/// What one source did at one port, summed over audit and deny records.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    count: u64,
    last_seen: u64,
}

/// The TOML. `since` and `now` are unix seconds (for the header).
pub fn render(entries: &[Entry], since: u64, now: u64) -> String {
    let mut by_port: BTreeMap<(u16, Protocol), BTreeMap<IpAddr, Seen>> = BTreeMap::new();
    for entry in entries {
        let seen = by_port
            .entry((entry.port, entry.protocol))
            .or_default()
            .entry(entry.source)
            .or_default();
        seen.count += entry.count;
        seen.last_seen = seen.last_seen.max(entry.last_seen);
    }
    let mut ports_of: BTreeMap<IpAddr, BTreeSet<(u16, Protocol)>> = BTreeMap::new();
    for (port, sources) in &by_port {
        for source in sources.keys() {
            ports_of.entry(*source).or_default().insert(*port);
        }
    }
    let trusted: BTreeMap<IpAddr, &BTreeSet<(u16, Protocol)>> = ports_of
        .iter()
        .filter(|(_, ports)| ports.len() >= TRUSTED_FROM_PORTS)
        .map(|(source, ports)| (*source, ports))
        .collect();

    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Suggested by `dockgatectl suggest` at {}: the policy that admits exactly the\n\
         # connections recorded since {} (refused, or with default = \"audit\" let in and\n\
         # recorded). Every source below is one dockgate refused or would refuse: admitting it\n\
         # is your decision. Review, then paste into /etc/dockgate/dockgate.toml (a trusted\n\
         # line joins the one there, if any) and run `dockgatectl reload`.",
        time(now),
        time(since)
    );
    if by_port.is_empty() {
        out += "#\n# Nothing was recorded in that time: nothing to admit.\n";
        return out;
    }
    if !trusted.is_empty() {
        write_trusted(&mut out, &trusted);
    }
    for ((port, protocol), sources) in &by_port {
        let listed: Vec<(&IpAddr, &Seen)> = sources
            .iter()
            .filter(|(source, _)| !trusted.contains_key(source))
            .collect();
        if listed.is_empty() {
            continue;
        }
        let range = PortRange {
            first: *port,
            last: *port,
            protocol: *protocol,
        };
        write_expose(&mut out, range, &listed, now);
    }
    out
}

/// The `trusted` line, with a comment per source naming the ports it reached.
fn write_trusted(out: &mut String, trusted: &BTreeMap<IpAddr, &BTreeSet<(u16, Protocol)>>) {
    *out += "\n";
    for (source, ports) in trusted {
        let list: Vec<String> = ports
            .iter()
            .map(|(port, protocol)| format!("{port}/{protocol}"))
            .collect();
        let _ = writeln!(
            out,
            "# {source} reached {} ports ({}): trusted admits it to every published port.",
            ports.len(),
            list.join(", ")
        );
    }
    let quoted: Vec<String> = trusted
        .keys()
        .map(|source| format!("\"{source}\""))
        .collect();
    let _ = writeln!(out, "trusted = [{}]", quoted.join(", "));
}

/// One `[[expose]]` entry for a port, a comment with its counts above it and one per source.
fn write_expose(out: &mut String, range: PortRange, listed: &[(&IpAddr, &Seen)], now: u64) {
    let total: u64 = listed.iter().map(|(_, seen)| seen.count).sum();
    let last = listed
        .iter()
        .map(|(_, seen)| seen.last_seen)
        .max()
        .unwrap_or(0);
    let _ = writeln!(
        out,
        "\n# {range}: {} source{}, {total} connection{}, the last at {}",
        listed.len(),
        plural(listed.len() as u64),
        plural(total),
        time(last)
    );
    *out += "[[expose]]\n";
    let _ = writeln!(out, "port = \"{range}\"");
    *out += "from = [\n";
    for (source, seen) in listed {
        let _ = writeln!(
            out,
            "    \"{source}\",  # {} connection{}, the last at {}",
            seen.count,
            plural(seen.count),
            time(seen.last_seen)
        );
    }
    *out += "]\n";
    let _ = writeln!(
        out,
        "comment = \"suggested from what was recorded until {}\"",
        time(now)
    );
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn time(unix: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix))
        .to_string()
}

#[cfg(test)]
mod tests;
