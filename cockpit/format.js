// How the page words what dockgated answers. Pure functions, so that node's test runner can
// check them without a browser (test/format.test.js).

// ListPorts' states, in the words dockgatectl uses, and how alarming each is.
const STATES = {
    denied: { label: "Denied", color: "grey" },
    "trusted-only": { label: "Trusted only", color: "green" },
    exposed: { label: "Exposed", color: "blue" },
    open: { label: "Open to all", color: "orange" },
};

// A published port as the page shows it: the daemon's state, and what overrides it.
export function portState(port) {
    if (port.loopback_only)
        return { label: "Loopback only", color: "grey", note: "Published on " + port.host_ip + ": no other host can reach it" };
    const zone = zoneOf(port.judged_by);
    if (zone) {
        const verdict = { open: "lets every source in", exposed: "lets some sources in" }[port.state] || "does not open the port";
        return { label: "docker-proxy", color: "purple", note: "Served on the host by docker-proxy: firewalld's zone " + zone + " " + verdict };
    }
    // The audit notice above the tables says what audit means; a note on every row would
    // only repeat it.
    if (port.audited)
        return {
            label: "Open, audited", color: "orange", note: "",
            title: "default = \"audit\": every source gets in, and those that \"deny\" would refuse are recorded",
        };
    const state = STATES[port.state] || { label: port.state, color: "grey" };
    return { ...state, note: "" };
}

// The zone that judges a port docker-proxy serves on the host ("" when dockgate judges it).
export function zoneOf(judgedBy) {
    return judgedBy && judgedBy.startsWith("zone ") ? judgedBy.slice("zone ".length) : "";
}

// Who may open a connection to the port from another host.
export function reachers(port) {
    if (port.loopback_only)
        return "This host only";
    const zone = zoneOf(port.judged_by);
    const who = port.state === "open" || (port.sources || []).includes("any")
        ? "Any source"
        : !port.sources || port.sources.length === 0 ? "No other host" : port.sources.join(", ");
    if (zone)
        return who + " (zone " + zone + ")";
    return port.audited ? who + " (audited)" : who;
}

// The Default property in the page's words: what happens to a port nobody exposed.
export function defaultLabel(policy) {
    return { deny: "Denied", audit: "Open, audited", allow: "Allowed (Docker's default)" }[policy] || policy || "…";
}

// firewalld's StrictForwardPorts, where it is on: what it does to Docker's ports, and what
// dockgate does about it (nothing with default = "allow": it must not open what the admin closed).
export function strictForwardPortsNotice(strict, policy) {
    if (!strict)
        return null;
    if (policy === "allow")
        return {
            kind: "warning",
            title: "firewalld's StrictForwardPorts is on",
            text: "firewalld refuses every connection to a port Docker publishes unless one of its own forward-ports names it. " +
                  "With default = \"allow\" dockgate adds none: it does not open what StrictForwardPorts closed.",
        };
    return {
        kind: "info",
        title: "firewalld's StrictForwardPorts is on",
        text: "firewalld refuses connections to a port Docker publishes unless a forward-port names it; " +
              "dockgate keeps one for each port its policy lets some source reach, and its own rules still judge every source.",
    };
}

// As `docker ps` writes it: an IPv6 address needs brackets before a port.
export function hostAddress(hostIp, hostPort) {
    return hostIp.includes(":") ? "[" + hostIp + "]:" + hostPort : hostIp + ":" + hostPort;
}

// An InvalidArgument message names its field first ("sources[1]: ...", "options.container:
// ..."); the dialog shows it next to that field.
export function invalidField(message) {
    const match = /^([a-z_]+)(?:\[\d+\]|\.([a-z_]+))?: /.exec(message || "");
    if (!match)
        return null;
    return match[2] || match[1];
}

// Splits what was typed into the sources field: one source per word, commas allowed.
export function splitSources(text) {
    return text.split(/[\s,]+/).filter(word => word !== "");
}

const UNITS = [["day", 86400], ["h", 3600], ["min", 60], ["s", 1]];

// A duration in its largest unit and the next one: "2 days 3 h", "9 min 58 s", "1 h".
export function duration(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    const first = UNITS.findIndex(([, size]) => seconds >= size);
    if (first < 0)
        return "0 s";
    const parts = [];
    for (const [unit, size] of UNITS.slice(first, first + 2)) {
        const count = Math.floor(seconds / size);
        seconds -= count * size;
        if (count > 0)
            parts.push(count + " " + (unit === "day" && count > 1 ? "days" : unit));
    }
    return parts.join(" ");
}

// Time left of an exposure, from expires_at (Unix seconds, 0 = never).
export function timeLeft(expiresAt, nowSeconds) {
    if (!expiresAt)
        return "Until removed";
    const left = expiresAt - nowSeconds;
    return left > 0 ? duration(left) : "Expiring";
}

// How long ago the last reconcile was, from LastReconcile (Unix microseconds, 0 = never).
export function ago(unixMicros, nowSeconds) {
    if (!unixMicros)
        return "Not yet";
    const seconds = nowSeconds - unixMicros / 1e6;
    return seconds < 1 ? "Just now" : duration(seconds) + " ago";
}

// A custom duration: an amount and a unit ("min", "h", "d"); NaN when the amount is no
// positive whole number, so the daemon's own limit (30 days) is the only other check.
export function customSeconds(amount, unit) {
    const size = { min: 60, h: 3600, d: 86400 }[unit];
    if (!/^\d+$/.test(String(amount).trim()) || !size)
        return NaN;
    const count = Number(amount);
    return count > 0 ? count * size : NaN;
}

// The short name of a D-Bus error: "InvalidArgument" for org.dockgate.Dockgate1.Error.InvalidArgument.
export function errorKind(error) {
    const name = (error && error.name) || "";
    return name.slice(name.lastIndexOf(".") + 1);
}

// "1 source", "3 sources".
export function plural(count, one, many) {
    return count + " " + (count === 1 ? one : many);
}

// A ListRefused source's address family, as a published port's host address has one.
export function family(address) {
    return address.includes(":") ? 6 : 4;
}

// ListRefused's entries (port, protocol, source, count, first_seen, last_seen, would_be), by
// what they were made to: "8080/tcp" -> { refused, wouldRefuse, sources }. `refused` and
// `wouldRefuse` are { count, sources } (connections, and distinct sources); `sources` lists
// the entries, the latest first. Both kinds can be there: the hour in which audit became deny.
export function refusedByPort(entries) {
    const groups = new Map();
    for (const entry of entries) {
        const key = entry.port + "/" + entry.protocol;
        if (!groups.has(key)) {
            groups.set(key, {
                port: key,
                refused: { count: 0, sources: new Set() },
                wouldRefuse: { count: 0, sources: new Set() },
                sources: [],
            });
        }
        const group = groups.get(key);
        const kind = entry.would_be ? group.wouldRefuse : group.refused;
        kind.count += Number(entry.count);
        kind.sources.add(entry.source);
        group.sources.push(entry);
    }
    for (const group of groups.values()) {
        group.sources.sort((a, b) => b.last_seen - a.last_seen || b.count - a.count ||
                                     (a.source < b.source ? -1 : a.source > b.source ? 1 : 0));
        group.refused.sources = group.refused.sources.size;
        group.wouldRefuse.sources = group.wouldRefuse.sources.size;
    }
    return groups;
}


// One line per kind: "Refused 20 from 1 source", "Would refuse 3 from 2 sources".
export function refusedSummary(group) {
    const lines = [];
    if (group.refused.count > 0)
        lines.push("Refused " + group.refused.count + " from " + plural(group.refused.sources, "source", "sources"));
    if (group.wouldRefuse.count > 0)
        lines.push("Would refuse " + group.wouldRefuse.count + " from " + plural(group.wouldRefuse.sources, "source", "sources"));
    return lines;
}

// When something was last seen, from Unix seconds: "Just now", "3 min 2 s ago".
export function seenAgo(unixSeconds, nowSeconds) {
    const seconds = nowSeconds - unixSeconds;
    return seconds < 1 ? "Just now" : duration(seconds) + " ago";
}

// Where the page shows each refusal: on the row of the published port it was made to, the
// first row of the source's address family (an IPv6 client reached [::]:8080, not
// 0.0.0.0:8080; dockgate counts by host port, not by host address), else the port's first row.
// Returns the groups by row ("8080/tcp 0.0.0.0") and, apart, those of ports no container
// publishes now. `ports` in the order the page shows them.
export function placeRefused(ports, entries) {
    const firstRow = new Map();
    for (const port of ports) {
        const key = port.host_port + "/" + port.protocol;
        const row = key + " " + port.host_ip;
        for (const slot of [key, key + " " + family(port.host_ip)]) {
            if (!firstRow.has(slot))
                firstRow.set(slot, row);
        }
    }
    const byRow = new Map();
    const elsewhere = [];
    for (const entry of entries) {
        const key = entry.port + "/" + entry.protocol;
        const row = firstRow.get(key + " " + family(entry.source)) || firstRow.get(key);
        if (!row) {
            elsewhere.push(entry);
            continue;
        }
        if (!byRow.has(row))
            byRow.set(row, []);
        byRow.get(row).push(entry);
    }
    return {
        rows: new Map([...byRow].map(([row, placed]) => [row, refusedByPort(placed).values().next().value])),
        elsewhere: [...refusedByPort(elsewhere).values()],
    };
}
