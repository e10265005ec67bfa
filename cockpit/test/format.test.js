// The page's wording of dockgated's answers, without a browser: `npm test` in cockpit/.
import { test } from "node:test";
import assert from "node:assert/strict";

import {
    ago, customSeconds, defaultLabel, duration, errorKind, hostAddress, invalidField, placeRefused,
    plural, portState, reachers, refusedByPort, refusedSummary, seenAgo, splitSources,
    strictForwardPortsNotice, timeLeft,
} from "../format.js";

test("InvalidArgument names the field the dialog shows it next to", () => {
    assert.equal(invalidField("sources[1]: \"10.0.0.300\" is not an address"), "sources");
    assert.equal(invalidField("port: 70000 is not a port"), "port");
    assert.equal(invalidField("ttl_seconds: more than 30 days"), "ttl_seconds");
    assert.equal(invalidField("options.container: not a string"), "container");
    assert.equal(invalidField("comment: longer than 256 bytes"), "comment");
    assert.equal(invalidField("options: unknown key \"color\""), "options");
    assert.equal(invalidField("something else went wrong"), null);
});

test("durations in their two largest units", () => {
    assert.equal(duration(0), "0 s");
    assert.equal(duration(59), "59 s");
    assert.equal(duration(598), "9 min 58 s");
    assert.equal(duration(3600), "1 h");
    assert.equal(duration(3661), "1 h 1 min");
    assert.equal(duration(86400), "1 day");
    assert.equal(duration(2 * 86400 + 3 * 3600 + 59), "2 days 3 h");
});

test("time left counts down to the expiry and says when there is none", () => {
    assert.equal(timeLeft(0, 1000), "Until removed");
    assert.equal(timeLeft(1600, 1000), "10 min");
    assert.equal(timeLeft(1000, 1000), "Expiring");
    assert.equal(ago(0, 1000), "Not yet");
    assert.equal(ago(995 * 1e6, 1000), "5 s ago");
});

test("custom durations are whole positive amounts", () => {
    assert.equal(customSeconds("10", "min"), 600);
    assert.equal(customSeconds(" 2 ", "d"), 172800);
    assert.ok(Number.isNaN(customSeconds("0", "h")));
    assert.ok(Number.isNaN(customSeconds("1.5", "h")));
    assert.ok(Number.isNaN(customSeconds("ten", "min")));
});

test("a port's state: loopback and docker-proxy over the daemon's state", () => {
    const port = { host_ip: "0.0.0.0", host_port: 8080, state: "exposed", sources: ["10.0.0.2"], loopback_only: false, judged_by: "dockgate" };
    assert.equal(portState(port).label, "Exposed");
    assert.equal(reachers(port), "10.0.0.2");
    const local = { ...port, host_ip: "127.0.0.1", state: "denied", sources: [], loopback_only: true };
    assert.equal(portState(local).label, "Loopback only");
    assert.equal(reachers(local), "This host only");
    // What the zone does is the daemon's answer: it reads the zone's ports and services.
    const proxied = { ...port, host_ip: "::", judged_by: "zone public", state: "denied", sources: [] };
    assert.equal(portState(proxied).label, "docker-proxy");
    assert.match(portState(proxied).note, /zone public does not open the port/);
    assert.equal(reachers(proxied), "No other host (zone public)");
    const opened = { ...proxied, state: "open", sources: ["any"] };
    assert.match(portState(opened).note, /zone public lets every source in/);
    assert.equal(reachers(opened), "Any source (zone public)");
    assert.equal(reachers({ ...port, state: "denied", sources: [] }), "No other host");
    assert.equal(reachers({ ...port, state: "open", sources: ["any"] }), "Any source");
});

test("addresses as docker ps writes them; sources split on spaces and commas", () => {
    assert.equal(hostAddress("0.0.0.0", 8080), "0.0.0.0:8080");
    assert.equal(hostAddress("::", 8080), "[::]:8080");
    assert.deepEqual(splitSources(" 10.0.0.1, 10.0.0.0/8\tany "), ["10.0.0.1", "10.0.0.0/8", "any"]);
});

test("D-Bus error names shortened", () => {
    assert.equal(errorKind({ name: "org.dockgate.Dockgate1.Error.InvalidArgument" }), "InvalidArgument");
    assert.equal(errorKind({}), "");
});

test("an audited port is open, and says so", () => {
    const port = { host_ip: "0.0.0.0", host_port: 8083, state: "open", sources: ["any"], loopback_only: false, judged_by: "dockgate", audited: true };
    assert.equal(portState(port).label, "Open, audited");
    assert.match(portState(port).title, /"deny" would refuse are recorded/);
    assert.equal(portState(port).note, "");
    assert.equal(reachers(port), "Any source (audited)");
    assert.equal(portState({ ...port, audited: false }).label, "Open to all");
    assert.equal(reachers({ ...port, audited: false }), "Any source");
    assert.equal(defaultLabel("audit"), "Open, audited");
    assert.equal(defaultLabel("deny"), "Denied");
    assert.equal(defaultLabel("allow"), "Allowed (Docker's default)");
    assert.equal(defaultLabel(undefined), "…");
});

test("StrictForwardPorts: a notice only where it is on, a warning where dockgate adds nothing", () => {
    assert.equal(strictForwardPortsNotice(false, "deny"), null);
    assert.equal(strictForwardPortsNotice(undefined, "deny"), null);
    assert.equal(strictForwardPortsNotice(true, "deny").kind, "info");
    assert.match(strictForwardPortsNotice(true, "audit").text, /keeps one for each port/);
    const allow = strictForwardPortsNotice(true, "allow");
    assert.equal(allow.kind, "warning");
    assert.match(allow.text, /dockgate adds none/);
});

// As ListRefused answers: one entry per port, protocol, source and kind.
const entry = (port, source, count, last_seen, would_be = false) =>
    ({ port, protocol: "tcp", source, count, first_seen: last_seen - 60, last_seen, would_be });

test("refused connections counted per port: connections, distinct sources, the latest first", () => {
    const groups = refusedByPort([
        entry(8080, "10.99.1.2", 20, 1000),
        entry(8081, "10.99.1.2", 5, 1010),
        entry(8080, "fd99:1::2", 3, 1020),
        entry(8080, "10.99.1.70", 1, 990),
    ]);
    assert.deepEqual([...groups.keys()], ["8080/tcp", "8081/tcp"]);
    const web = groups.get("8080/tcp");
    assert.deepEqual(web.refused, { count: 24, sources: 3 });
    assert.deepEqual(web.wouldRefuse, { count: 0, sources: 0 });
    assert.deepEqual(web.sources.map(e => e.source), ["fd99:1::2", "10.99.1.2", "10.99.1.70"]);
    assert.deepEqual(refusedSummary(web), ["Refused 24 from 3 sources"]);
    assert.deepEqual(refusedSummary(groups.get("8081/tcp")), ["Refused 5 from 1 source"]);
});

test("audit's would-be refusals apart from real ones: the hour in which audit became deny", () => {
    const group = refusedByPort([
        entry(8083, "10.99.1.2", 2, 1000, true),
        entry(8083, "10.99.1.3", 1, 1001, true),
        entry(8083, "10.99.1.2", 4, 1100, false),
    ]).get("8083/tcp");
    assert.deepEqual(refusedSummary(group), ["Refused 4 from 1 source", "Would refuse 3 from 2 sources"]);
    // One source, both kinds: two entries, as dockgatectl refused lists them.
    assert.equal(group.sources.filter(e => e.source === "10.99.1.2").length, 2);
    assert.deepEqual(refusedSummary(refusedByPort([entry(8083, "10.99.1.2", 1, 1000, true)]).get("8083/tcp")),
                     ["Would refuse 1 from 1 source"]);
});

test("each refusal on the row of its port and address family; unpublished ports apart", () => {
    const row = (host_ip, host_port) => ({ host_ip, host_port, protocol: "tcp" });
    const ports = [row("0.0.0.0", 8080), row("::", 8080), row("0.0.0.0", 8081), row("10.0.0.1", 8082), row("10.0.0.2", 8082)];
    const placed = placeRefused(ports, [
        entry(8080, "10.99.1.2", 20, 1000),
        entry(8080, "fd99:1::2", 3, 1000),
        entry(8081, "fd99:1::2", 2, 1000),
        entry(8082, "10.99.1.2", 7, 1000),
        entry(8090, "10.99.1.2", 1, 1000),
    ]);
    assert.deepEqual(refusedSummary(placed.rows.get("8080/tcp 0.0.0.0")), ["Refused 20 from 1 source"]);
    assert.deepEqual(refusedSummary(placed.rows.get("8080/tcp ::")), ["Refused 3 from 1 source"]);
    // No IPv6 row: on the port's first row rather than lost.
    assert.deepEqual(refusedSummary(placed.rows.get("8081/tcp 0.0.0.0")), ["Refused 2 from 1 source"]);
    // Two host addresses of one family: counted once, on the first.
    assert.deepEqual(refusedSummary(placed.rows.get("8082/tcp 10.0.0.1")), ["Refused 7 from 1 source"]);
    assert.equal(placed.rows.has("8082/tcp 10.0.0.2"), false);
    assert.deepEqual(placed.elsewhere.map(group => group.port), ["8090/tcp"]);
    assert.equal(placeRefused([], []).rows.size, 0);
});

test("plural and last seen", () => {
    assert.equal(plural(1, "source", "sources"), "1 source");
    assert.equal(plural(0, "source", "sources"), "0 sources");
    assert.equal(seenAgo(1000, 1000.4), "Just now");
    assert.equal(seenAgo(1000, 1182), "3 min 2 s ago");
});
