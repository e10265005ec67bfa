// The "Docker exposure" page: dockgated's status, the published ports, the exposures, and
// the dialogs that change them. Everything shown is what dockgated answered; the page decides
// nothing about the policy itself.
/* global cockpit */
import { Dockgate } from "./client.js";
import {
    ago, customSeconds, defaultLabel, errorKind, hostAddress, invalidField, placeRefused, portState,
    reachers, refusedSummary, seenAgo, splitSources, strictForwardPortsNotice, timeLeft, zoneOf,
} from "./format.js";

const dockgate = new Dockgate();

let permissions = null;
// The last call that failed, shown until one succeeds.
let loadError = "";
// polkit's refusal to let the caller read, where Permissions() said "auth": it wanted a
// password, and nobody could give one (no polkit agent in this session).
let readRefused = "";
// Whether the lists have answered since dockgated appeared: until then the page would show
// empty tables that are not empty.
let listed = false;
// Why the last Remove did not remove, until the next one.
let removeError = "";
let ports = [];
let exposures = [];
// ListRefused's answer for the last hour.
let refused = [];
// The ports rows ("8080/tcp 0.0.0.0") whose refused sources are shown.
const expandedRows = new Set();
let me = { id: -1, name: "" };
const userNames = new Map([[0, "root"]]);
// The latest answer wins when signals come faster than the calls they start.
const generations = { ports: 0, exposures: 0, refused: 0 };
// "In the last hour" is asked for again this often, as well as on RefusedChanged: the window
// moves without any signal.
const REFUSED_WINDOW = 3600;
const REFUSED_POLL_MS = 60 * 1000;

const $ = id => document.getElementById(id);

// A DOM element: h("td", { class: "x", "data-id": 1, onclick: f }, child, "text", ...).
function h(tag, attributes, ...children) {
    const element = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
        if (value === undefined || value === null || value === false)
            continue;
        if (name.startsWith("on"))
            element.addEventListener(name.slice(2), value);
        else
            element.setAttribute(name, value === true ? "" : value);
    }
    element.append(...children.flat().filter(child => child !== null && child !== undefined));
    return element;
}

const ICONS = {
    ok: "fa-check-circle",
    danger: "fa-exclamation-circle",
    warning: "fa-exclamation-triangle",
    info: "fa-info-circle",
};

function icon(kind) {
    return h("i", { class: "fas fa-fw " + ICONS[kind], "aria-hidden": "true" });
}

function label(text, color, title) {
    return h("span", { class: "pf-v6-c-label pf-m-compact pf-m-" + color, title },
             h("span", { class: "pf-v6-c-label__content" }, h("span", { class: "pf-v6-c-label__text" }, text)));
}

function alert(kind, title, description, id) {
    return h("div", { class: "pf-v6-c-alert pf-m-inline pf-m-" + kind, id },
             h("div", { class: "pf-v6-c-alert__icon" }, icon(kind)),
             h("p", { class: "pf-v6-c-alert__title" }, title),
             description ? h("div", { class: "pf-v6-c-alert__description" }, description) : null);
}

function button(text, kind, attributes) {
    return h("button", { class: "pf-v6-c-button pf-m-small pf-m-" + kind, type: "button", ...attributes },
             h("span", { class: "pf-v6-c-button__text" }, text));
}

function cell(columnLabel, ...children) {
    return h("td", { class: "pf-v6-c-table__td", "data-label": columnLabel }, ...children);
}

// The tables are built again from dockgated's answers after every signal. Rows that come out
// the same stay in the page: a click is a press and a release on the same element, and a
// table rebuilt between the two (a container stopping elsewhere, a reconcile) would swallow
// it. `data` is what the rows' handlers hold, so unchanged rows never act on stale answers.
const shownRows = new WeakMap();

function replaceRows(body, rows, data) {
    const key = JSON.stringify(data) + "\n" + rows.map(row => row.outerHTML).join("\n");
    if (shownRows.get(body) === key)
        return;
    shownRows.set(body, key);
    body.replaceChildren(...rows);
}

function emptyRow(columns, text) {
    return h("tr", { class: "pf-v6-c-table__tr" },
             h("td", { class: "pf-v6-c-table__td dg-empty", colspan: columns }, text));
}

// What the caller may do, in the words of Permissions(): "yes", "auth" (polkit asks for a
// password) or "no".
function may(action) {
    return permissions && (permissions[action] === "yes" || permissions[action] === "auth");
}

const READ_ONLY_REASON = "polkit does not let this account change exposure (org.dockgate.Dockgate1.expose)";

function mayRemove(exposure) {
    if (exposure.origin !== "runtime")
        return false;
    return may("admin") || (may("expose") && exposure.owner_uid === me.id);
}

function removeRefusal(exposure) {
    if (exposure.origin !== "runtime")
        return "Set in dockgate's config file: read only here";
    if (!may("expose"))
        return READ_ONLY_REASON;
    return "Set by " + ownerOf(exposure) + ": removing another user's exposure needs polkit's org.dockgate.Dockgate1.admin";
}

function ownerName(uid) {
    return userNames.get(uid) || "uid " + uid;
}

// dockgated names the owner as its host's user database does (LDAP and SSSD users too);
// /etc/passwd is the fallback for a dockgated that does not.
function ownerOf(exposure) {
    return exposure.owner || ownerName(exposure.owner_uid);
}

// "live", or why the page is blank: "connecting", "absent" (dockgated is not on the bus),
// "no-read" (polkit says no), "error" (dockgated did not say what the caller may do).
function pageState() {
    if (dockgate.state !== "ready")
        return dockgate.state;
    if (!permissions)
        return loadError ? "error" : "connecting";
    if (permissions.read === "no" || readRefused)
        return "no-read";
    return listed ? "live" : "connecting";
}

const spinner = () => h("span", { class: "pf-v6-c-spinner pf-m-lg", role: "progressbar", "aria-label": "Connecting" });

function blankPage(state) {
    switch (state) {
    case "connecting":
        return emptyState("Connecting to dockgated", null, spinner());
    case "absent":
        return emptyState(
            "dockgated is not running",
            dockgate.activatable
                ? ["The system bus could not start dockgate.service. Its log: ", h("code", {}, "journalctl -u dockgate.service")]
                : "Nothing answers as org.dockgate.Dockgate1 on the system bus, and the bus cannot start it: dockgate is not installed on this host, or dockgated was started by hand and has stopped.",
            icon("warning"),
            "This page connects by itself as soon as dockgated is on the bus.");
    case "no-read":
        return emptyState(
            "You may not see Docker exposure on this host",
            [permissions.read === "no"
                ? me.name + " lacks polkit's org.dockgate.Dockgate1.read. "
                : "polkit wants a password before " + me.name + " may read dockgate's policy (org.dockgate.Dockgate1.read), and none was given. ",
            "An administrator can grant it, for example with the rules shipped in ",
            h("code", {}, "/usr/share/doc/dockgate/50-dockgate.rules.example"), " (group dockgate)."],
            icon("info"));
    default:
        return emptyState("dockgated did not answer", loadError, icon("danger"));
    }
}

function renderPage() {
    const state = pageState();
    const blank = $("blank");
    blank.dataset.state = state;
    blank.hidden = state === "live";
    $("live").hidden = state !== "live";
    $("main").setAttribute("aria-busy", String(state === "connecting"));
    if (state !== "live") {
        blank.replaceChildren(blankPage(state));
        if ($("expose-dialog").open)
            $("expose-dialog").close();
        return;
    }
    blank.replaceChildren();
    renderNotices();
    renderStatus();
    renderPorts();
    renderExposures();
}

function emptyState(title, body, iconElement, footer) {
    return h("div", { class: "pf-v6-c-empty-state" },
             h("div", { class: "pf-v6-c-empty-state__content" },
               h("div", { class: "pf-v6-c-empty-state__header" },
                 h("div", { class: "pf-v6-c-empty-state__icon" }, iconElement),
                 h("div", { class: "pf-v6-c-empty-state__title" },
                   h("h2", { class: "pf-v6-c-empty-state__title-text", id: "blank-title" }, title))),
               body ? h("div", { class: "pf-v6-c-empty-state__body", id: "blank-body" }, body) : null,
               footer ? h("div", { class: "pf-v6-c-empty-state__footer dg-muted" }, footer) : null));
}

function renderNotices() {
    const notices = [];
    if (loadError)
        notices.push(alert("danger", "dockgated did not answer", loadError));
    if (removeError)
        notices.push(alert("danger", "Not removed", removeError));
    if (permissions && !may("expose"))
        notices.push(alert("info", "Read only",
                           [me.name + " may see the ports and exposures but not change them: polkit does not grant this account org.dockgate.Dockgate1.expose. " +
                            "Members of group dockgate may, with the rules shipped in ",
                           h("code", {}, "/usr/share/doc/dockgate/50-dockgate.rules.example"), "."],
                           "read-only"));
    const props = dockgate.properties;
    if (props.Default === "audit")
        notices.push(alert("info", "Audit mode: dockgate refuses nothing, and records what deny would refuse",
                           ["Ports nobody exposed stay open to every source; the connections that ",
                            h("code", {}, "default = \"deny\""),
                            " would refuse are counted below (Would refuse). Once the sources that need a port are exposed or trusted, " +
                            "changing one word in dockgate's config and reloading turns deny on; ",
                            h("code", {}, "dockgatectl suggest"), " writes the exposures that would admit exactly what was recorded."],
                           "audit-notice"));
    const strict = strictForwardPortsNotice(props.StrictForwardPorts, props.Default);
    if (strict)
        notices.push(alert(strict.kind, strict.title, strict.text, "strict-notice"));
    if (props.FirewalldConnected === false)
        notices.push(alert("warning", "firewalld is not running",
                           "dockgate's rules stay in the kernel; changes are saved and applied once firewalld is back."));
    $("notices").replaceChildren(...notices);
}

function connection(connected) {
    if (connected === undefined)
        return "…";
    return h("span", { class: connected ? "dg-ok" : "dg-danger" },
             icon(connected ? "ok" : "danger"), connected ? " Connected" : " Not running");
}

function renderStatus() {
    const props = dockgate.properties;
    $("version").textContent = props.Version ? "dockgated " + props.Version : "";
    const items = [
        ["firewalld", connection(props.FirewalldConnected), "firewalld"],
        ["Docker", connection(props.DockerConnected), "docker"],
        ["Unexposed ports", defaultLabel(props.Default), "default"],
        ["Denied packets", props.Verdict === undefined ? "…" : props.Verdict === "reject" ? "Rejected" : "Dropped", "verdict"],
        ["Removing an exposure", props.OnRevoke === undefined ? "…" : props.OnRevoke === "cut" ? "Ends its connections" : "Keeps its connections", "on-revoke"],
        ["Bridge zone", props.BridgeZone || "…", "bridge-zone"],
        ["Rules in force", props.RuleCount === undefined ? "…" : String(props.RuleCount), "rules"],
        ["Last reconcile", h("span", { "data-reconciled": props.LastReconcile || 0, title: reconcileTime(props.LastReconcile) },
                             ago(props.LastReconcile, Date.now() / 1000)), "last-reconcile"],
    ];
    $("status").replaceChildren(...items.map(([term, value, key]) =>
        h("div", { class: "pf-v6-c-description-list__group", "data-status": key },
          h("dt", { class: "pf-v6-c-description-list__term" }, h("span", { class: "pf-v6-c-description-list__text" }, term)),
          h("dd", { class: "pf-v6-c-description-list__description" }, h("div", { class: "pf-v6-c-description-list__text" }, value)))));
}

function reconcileTime(unixMicros) {
    return unixMicros ? new Date(unixMicros / 1000).toLocaleString() : undefined;
}

function portKey(port) {
    return port.host_port + "/" + port.protocol;
}

function rowKey(port) {
    return portKey(port) + " " + port.host_ip;
}

// The "In the last hour" cell of a port without refusals: whether there could have been any.
function nothingRefused(port) {
    if (port.loopback_only)
        return null;
    const zone = zoneOf(port.judged_by);
    if (zone)
        return h("span", { class: "dg-muted", title: "firewalld's zone " + zone + " judges this port; dockgate records only what its own rules refuse" }, "Not recorded");
    if (dockgate.properties.Default === "allow")
        return h("span", { class: "dg-muted", title: "default = \"allow\": dockgate refuses nothing here, so it records nothing" }, "Not recorded");
    return h("span", { class: "dg-muted" }, "None");
}

// "Would refuse 23 from 2 sources" may break before "from", nowhere else: a narrow table
// keeps its Expose column in view.
function keepTogether(line) {
    const at = line.indexOf(" from ");
    if (at < 0)
        return [line];
    return [h("span", { class: "dg-nowrap" }, line.slice(0, at)), " ", h("span", { class: "dg-nowrap" }, line.slice(at + 1))];
}

function refusedCell(port, group) {
    if (!group)
        return cell("In the last hour", nothingRefused(port));
    const key = rowKey(port);
    const expanded = expandedRows.has(key);
    return cell("In the last hour",
                h("button", {
                    class: "pf-v6-c-button pf-m-link pf-m-inline dg-refused-toggle",
                    type: "button",
                    "aria-expanded": String(expanded),
                    "data-toggle": "refused",
                    "data-refused": group.refused.count,
                    "data-refused-sources": group.refused.sources,
                    "data-would-refuse": group.wouldRefuse.count,
                    "data-would-refuse-sources": group.wouldRefuse.sources,
                    onclick: () => {
                        if (expandedRows.has(key))
                            expandedRows.delete(key);
                        else
                            expandedRows.add(key);
                        renderPorts();
                    },
                },
                  h("span", { class: "pf-v6-c-button__icon pf-m-start" },
                    h("i", { class: "fas fa-fw " + (expanded ? "fa-angle-down" : "fa-angle-right"), "aria-hidden": "true" })),
                  h("span", { class: "pf-v6-c-button__text" },
                    refusedSummary(group).map((line, index) => h("span", { class: "dg-refused-line", "data-line": index },
                                                                 ...keepTogether(line))))));
}

// The sources behind a port's count, each with its own Expose.
function refusedSourcesRow(port, group, refusal) {
    const rows = group.sources.map(entry =>
        h("tr", {
            class: "pf-v6-c-table__tr",
            "data-source": entry.source,
            "data-count": entry.count,
            "data-would-be": String(entry.would_be),
        },
          cell("Source", entry.source),
          cell("Connections", String(entry.count)),
          cell("First seen", h("span", { "data-seen": entry.first_seen, title: new Date(entry.first_seen * 1000).toLocaleString() })),
          cell("Last seen", h("span", { "data-seen": entry.last_seen, title: new Date(entry.last_seen * 1000).toLocaleString() })),
          // Only where audit let it in: the hour in which audit became deny has both kinds.
          cell("", entry.would_be
              ? label("Would refuse", "orange", "Let in: default = \"audit\" only records what \"deny\" would refuse")
              : null),
          h("td", { class: "pf-v6-c-table__td pf-m-action dg-actions" },
            button("Expose to this source", "secondary", {
                "data-action": "expose-source",
                disabled: !!refusal,
                title: refusal || "Open the Expose dialog for " + portKey(port) + " with " + entry.source,
                onclick: () => openExposeDialog(port, entry.source),
            }))));
    return h("tr", { class: "pf-v6-c-table__tr pf-v6-c-table__expandable-row pf-m-expanded", "data-refused-of": rowKey(port) },
             h("td", { class: "pf-v6-c-table__td", colspan: 8 },
               h("div", { class: "pf-v6-c-table__expandable-row-content" },
                 h("table", { class: "pf-v6-c-table pf-m-compact pf-m-grid-md dg-sources", "aria-label": "Sources refused on " + hostAddress(port.host_ip, port.host_port) + " in the last hour" },
                   h("thead", { class: "pf-v6-c-table__thead" },
                     h("tr", { class: "pf-v6-c-table__tr" },
                       ...["Source", "Connections", "First seen", "Last seen"].map(text =>
                         h("th", { class: "pf-v6-c-table__th pf-m-fit-content", scope: "col" }, text)),
                       h("th", { class: "pf-v6-c-table__th", scope: "col" }, h("span", { class: "pf-v6-screen-reader" }, "Kind")),
                       h("th", { class: "pf-v6-c-table__th", scope: "col" }, h("span", { class: "pf-v6-screen-reader" }, "Actions")))),
                   h("tbody", { class: "pf-v6-c-table__tbody" }, rows)))));
}

function renderPorts() {
    const body = $("ports").tBodies[0];
    // By port, IPv4 before IPv6, as `docker ps` lists them.
    const family = port => port.host_ip.includes(":") ? 1 : 0;
    const sorted = [...ports].sort((a, b) => a.host_port - b.host_port || a.protocol.localeCompare(b.protocol) ||
                                              family(a) - family(b) || (a.host_ip < b.host_ip ? -1 : a.host_ip > b.host_ip ? 1 : 0));
    const placed = placeRefused(sorted, refused);
    if (sorted.length === 0) {
        const props = dockgate.properties;
        replaceRows(body, [emptyRow(8, props.DockerConnected === false ? "Docker is not running." : "No container publishes a port.")], null);
    } else {
        replaceRows(body, sorted.flatMap(port => {
            const state = portState(port);
            let refusal;
            if (!may("expose"))
                refusal = READ_ONLY_REASON;
            else if (port.loopback_only)
                refusal = "Published on loopback only: no other host can reach it";
            else if (zoneOf(port.judged_by))
                refusal = "docker-proxy serves it on the host: firewalld's zone " + zoneOf(port.judged_by) + " decides who reaches it, not dockgate";
            const group = placed.rows.get(rowKey(port));
            const row = h("tr", {
                class: "pf-v6-c-table__tr",
                "data-port": portKey(port),
                "data-host-ip": port.host_ip,
                "data-judged-by": port.judged_by,
            },
                          cell("Container", port.container),
                          cell("Host address", hostAddress(port.host_ip, port.host_port)),
                          cell("Protocol", port.protocol),
                          cell("Container port", String(port.container_port)),
                          cell("State", h("span", { "data-state": port.state, "data-audited": String(!!port.audited) },
                                          label(state.label, state.color, state.title || state.note || undefined)),
                               state.note ? h("div", { class: "dg-note" }, state.note) : null),
                          cell("Who may reach it", reachers(port)),
                          refusedCell(port, group),
                          h("td", { class: "pf-v6-c-table__td pf-m-action dg-actions" },
                            button("Expose", "secondary", {
                                "data-action": "expose",
                                disabled: !!refusal,
                                title: refusal,
                                onclick: () => openExposeDialog(port),
                            })));
            return group && expandedRows.has(rowKey(port)) ? [row, refusedSourcesRow(port, group, refusal)] : [row];
        }), [sorted, placed.rows.size, refused]);
    }
    $("refused-elsewhere").replaceChildren(...(placed.elsewhere.length === 0 ? [] : [
        "In the last hour, also to ports no container publishes now: ",
        placed.elsewhere.map(group => group.port + " (" + refusedSummary(group).join(", ").toLowerCase() + ")").join("; "),
        ". ", h("code", {}, "dockgatectl refused"), " lists their sources.",
    ]));
    $("explain-ports").replaceChildren(...[...new Set(sorted.map(portKey))].map(key => h("option", { value: key })));
    tickClocks();
}

function renderExposures() {
    const body = $("exposures").tBodies[0];
    if (exposures.length === 0) {
        replaceRows(body, [emptyRow(8, dockgate.properties.Default === "deny"
            ? "No exposures: only trusted sources reach published ports."
            : "No exposures.")], null);
        return;
    }
    replaceRows(body, exposures.map(exposure => {
        const removable = mayRemove(exposure);
        return h("tr", { class: "pf-v6-c-table__tr", "data-id": exposure.id, "data-origin": exposure.origin },
                 cell("Port", exposure.port),
                 cell("Sources", exposure.sources.join(", ")),
                 cell("Container", exposure.container || h("span", { class: "dg-muted" }, "Any")),
                 cell("Set by", exposure.origin === "config"
                     ? h("span", { class: "dg-muted" }, "Config file")
                     : ownerOf(exposure)),
                 cell("Comment", exposure.comment || ""),
                 // Filled in by the clock, so that a row stays the same from one second to the next.
                 cell("Time left", h("span", { "data-expires": exposure.expires_at })),
                 cell("In force", exposure.active
                     ? label("Yes", "green")
                     : label("Waiting", "grey", "Only while " + exposure.container + " publishes " + exposure.port)),
                 h("td", { class: "pf-v6-c-table__td pf-m-action dg-actions" },
                   exposure.origin === "config"
                       ? h("span", { class: "dg-muted", title: removeRefusal(exposure) }, "Read only")
                       : button("Remove", "secondary", {
                           "data-action": "unexpose",
                           disabled: !removable,
                           title: removable ? undefined : removeRefusal(exposure),
                           onclick: event => unexpose(exposure, event.currentTarget),
                       })));
    }), exposures);
    tickClocks();
}

// Countdowns and "ago" move every second without asking dockgated.
function tickClocks() {
    const now = Date.now() / 1000;
    for (const element of document.querySelectorAll("[data-expires]"))
        element.textContent = timeLeft(Number(element.dataset.expires), now);
    for (const element of document.querySelectorAll("[data-reconciled]"))
        element.textContent = ago(Number(element.dataset.reconciled), now);
    for (const element of document.querySelectorAll("[data-seen]"))
        element.textContent = seenAgo(Number(element.dataset.seen), now);
}

setInterval(tickClocks, 1000);

function failure(error) {
    return errorKind(error) ? errorKind(error) + ": " + error.message : String(error.message || error);
}

async function refreshPorts() {
    const generation = ++generations.ports;
    try {
        const answer = await dockgate.listPorts();
        if (generation === generations.ports) {
            ports = answer;
            loadError = readRefused = "";
        }
    } catch (error) {
        if (generation === generations.ports)
            await noteFailure(error);
    }
    renderPage();
}

async function refreshRefused() {
    const generation = ++generations.refused;
    try {
        const answer = await dockgate.listRefused(Math.floor(Date.now() / 1000) - REFUSED_WINDOW);
        if (generation === generations.refused) {
            refused = answer;
            loadError = readRefused = "";
        }
    } catch (error) {
        if (generation === generations.refused)
            await noteFailure(error);
    }
    renderPage();
}

async function refreshExposures() {
    const generation = ++generations.exposures;
    try {
        const answer = await dockgate.listExposures();
        if (generation === generations.exposures) {
            exposures = answer;
            loadError = readRefused = "";
        }
    } catch (error) {
        if (generation === generations.exposures)
            await noteFailure(error);
    }
    renderPage();
}

// polkit's answers can change under a running page (rules, groups): a refusal asks again.
async function noteFailure(error) {
    if (errorKind(error) !== "NotAuthorized") {
        loadError = failure(error);
        return;
    }
    await loadPermissions();
    if (permissions && permissions.read !== "yes")
        readRefused = error.message;
    else
        loadError = failure(error);
}

async function loadPermissions() {
    try {
        permissions = await dockgate.permissions();
        loadError = "";
    } catch (error) {
        permissions = null;
        loadError = failure(error);
    }
}

async function refreshAll() {
    readRefused = "";
    listed = false;
    await loadPermissions();
    if (permissions && permissions.read !== "no")
        await Promise.all([refreshPorts(), refreshExposures(), refreshRefused()]);
    listed = true;
    renderPage();
}

// Signals come in bursts (a container with four ports); one call answers them all.
function debounced(refresh) {
    let timer = null;
    return () => {
        clearTimeout(timer);
        timer = setTimeout(refresh, 50);
    };
}

const portsChanged = debounced(refreshPorts);
const exposuresChanged = debounced(() => Promise.all([refreshExposures(), refreshPorts()]));
const refusedChanged = debounced(refreshRefused);

dockgate.addEventListener("state", () => {
    if (dockgate.state === "ready")
        refreshAll();
    else
        permissions = null;
    renderPage();
});
dockgate.addEventListener("properties", () => renderPage());
dockgate.addEventListener("ports-changed", () => { if (may("read")) portsChanged() });
dockgate.addEventListener("exposures-changed", () => { if (may("read")) exposuresChanged() });
dockgate.addEventListener("refused-changed", () => { if (may("read")) refusedChanged() });
setInterval(() => { if (dockgate.state === "ready" && may("read")) refusedChanged() }, REFUSED_POLL_MS);

// Field errors: the helper text under a field, in PatternFly's error style.
function setFieldError(helperId, control, message) {
    const helper = $(helperId);
    helper.replaceChildren(...(message
        ? [h("div", { class: "pf-v6-c-helper-text" },
             h("div", { class: "pf-v6-c-helper-text__item pf-m-error" },
               h("span", { class: "pf-v6-c-helper-text__item-icon" }, icon("danger")),
               h("span", { class: "pf-v6-c-helper-text__item-text" }, message)))]
        : []));
    if (control) {
        control.closest(".pf-v6-c-form-control")?.classList.toggle("pf-m-error", !!message);
        if (message)
            control.setAttribute("aria-invalid", "true");
        else
            control.removeAttribute("aria-invalid");
    }
}

// The dialog's fields by the names dockgated's InvalidArgument gives them.
const EXPOSE_FIELDS = {
    sources: ["expose-sources-error", "expose-sources"],
    ttl_seconds: ["expose-duration-error", "expose-custom-amount"],
    container: ["expose-container-error", null],
    comment: ["expose-comment-error", "expose-comment"],
};

let exposePort = null;

function clearExposeErrors() {
    for (const [helper, control] of Object.values(EXPOSE_FIELDS))
        setFieldError(helper, control && $(control), "");
    $("expose-error").replaceChildren();
}

// From a port's row, or (`source`) from one of the sources it refused.
function openExposeDialog(port, source) {
    exposePort = port;
    clearExposeErrors();
    const others = ports.filter(other => portKey(other) === portKey(port))
            .map(other => hostAddress(other.host_ip, other.host_port));
    $("expose-title").textContent = "Expose " + portKey(port);
    $("expose-description").textContent = "Let more sources open connections to " + others.join(" and ") +
        (port.container ? " (" + port.container + ")" : "") + ".";
    $("expose-sources").value = source || "";
    $("expose-comment").value = "";
    $("expose-duration-1h").checked = true;
    $("expose-container").checked = false;
    $("expose-container").disabled = !port.container;
    $("expose-container-label").textContent = port.container
        ? "Only while " + port.container + " publishes the port"
        : "Only while this container publishes the port";
    $("expose-auth-hint").textContent = permissions.expose === "auth" ? "polkit will ask for your password." : "";
    $("expose-submit").disabled = false;
    $("expose-dialog").showModal();
    $("expose-sources").focus();
}

function chosenTtl() {
    const choice = document.querySelector("input[name=expose-duration]:checked").value;
    if (choice !== "custom")
        return Number(choice);
    return customSeconds($("expose-custom-amount").value, $("expose-custom-unit").value);
}

async function submitExpose(event) {
    event.preventDefault();
    clearExposeErrors();
    const ttl = chosenTtl();
    // The one thing the page checks itself: D-Bus has no way to send "not a number".
    if (Number.isNaN(ttl)) {
        setFieldError("expose-duration-error", $("expose-custom-amount"), "A whole number greater than 0.");
        return;
    }
    $("expose-submit").disabled = true;
    try {
        await dockgate.expose(portKey(exposePort), splitSources($("expose-sources").value), ttl, {
            container: $("expose-container").checked ? exposePort.container : "",
            comment: $("expose-comment").value.trim(),
        });
        $("expose-dialog").close();
    } catch (error) {
        showExposeError(error);
    } finally {
        $("expose-submit").disabled = false;
    }
}

function showExposeError(error) {
    const field = errorKind(error) === "InvalidArgument" ? EXPOSE_FIELDS[invalidField(error.message)] : null;
    if (field) {
        setFieldError(field[0], field[1] && $(field[1]), error.message);
        if (field[1])
            $(field[1]).focus();
    } else {
        $("expose-error").replaceChildren(alert("danger", "Not exposed", failure(error)));
    }
}

async function unexpose(exposure, control) {
    control.disabled = true;
    removeError = "";
    try {
        await dockgate.unexpose(exposure.id);
    } catch (error) {
        removeError = exposure.id + ": " + failure(error);
        control.disabled = false;
    }
    renderNotices();
}

async function submitExplain(event) {
    event.preventDefault();
    const source = $("explain-source");
    const port = $("explain-port");
    setFieldError("explain-source-error", source, "");
    setFieldError("explain-port-error", port, "");
    const answer = $("explain-answer");
    answer.replaceChildren();
    try {
        const asked = source.value.trim() + " to " + port.value.trim() + ": ";
        const [allowed, reason] = await dockgate.explain(source.value.trim(), port.value.trim());
        answer.replaceChildren(h("div", { class: "dg-explain-answer", "data-allowed": String(allowed) },
                                 label(allowed ? "Gets in" : "Refused", allowed ? "green" : "red"),
                                 " ", asked, h("span", { id: "explain-reason" }, reason)));
    } catch (error) {
        const field = errorKind(error) === "InvalidArgument" ? invalidField(error.message) : null;
        if (field === "source" || field === "port")
            setFieldError("explain-" + field + "-error", field === "source" ? source : port, error.message);
        else
            answer.replaceChildren(alert("danger", "No answer", failure(error)));
    }
}

$("expose-form").addEventListener("submit", submitExpose);
$("expose-cancel").addEventListener("click", () => $("expose-dialog").close());
$("expose-custom-amount").addEventListener("focus", () => { $("expose-duration-custom").checked = true });
$("expose-custom-unit").addEventListener("focus", () => { $("expose-duration-custom").checked = true });
$("explain").addEventListener("submit", submitExplain);

// Owners are uids; /etc/passwd names them, as on Cockpit's accounts page.
cockpit.file("/etc/passwd").read()
        .then(text => {
            for (const line of (text || "").split("\n")) {
                const fields = line.split(":");
                if (fields.length > 2)
                    userNames.set(Number(fields[2]), fields[0]);
            }
            renderPage();
        })
        .catch(error => console.warn("dockgate: cannot read /etc/passwd:", error));
cockpit.user().then(user => {
    me = user;
    renderPage();
});
renderPage();
