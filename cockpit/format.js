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
    return zone ? who + " (zone " + zone + ")" : who;
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
