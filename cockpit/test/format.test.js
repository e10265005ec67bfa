// The page's wording of dockgated's answers, without a browser: `npm test` in cockpit/.
import { test } from "node:test";
import assert from "node:assert/strict";

import {
    ago, customSeconds, duration, errorKind, hostAddress, invalidField, portState, reachers,
    splitSources, timeLeft,
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
