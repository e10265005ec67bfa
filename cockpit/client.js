// dockgated on the system bus, through Cockpit's bridge: the connection's life (dockgated
// absent, starting, restarting), its properties, signals and calls.
/* global cockpit */

const NAME = "org.dockgate.Dockgate1";
const PATH = "/org/dockgate/Dockgate1";
const IFACE = "org.dockgate.Dockgate1";
const BUS = "org.freedesktop.DBus";

// Signals that mean "ask again", and the event each becomes.
const SIGNALS = {
    PortsChanged: "ports-changed",
    ExposuresChanged: "exposures-changed",
    RefusedChanged: "refused-changed",
};

// Events: "state" (this.state is "connecting", "absent" or "ready"), "properties", and those
// of SIGNALS.
export class Dockgate extends EventTarget {
    constructor() {
        super();
        this.state = "connecting";
        // Whether the bus could start dockgated (an activation file is installed).
        this.activatable = false;
        this.client = null;
        this.proxy = null;
        this.connect();
    }

    get properties() {
        return this.proxy && this.proxy.valid ? this.proxy.data : {};
    }

    setState(state) {
        if (state === this.state)
            return;
        this.state = state;
        this.dispatchEvent(new Event("state"));
    }

    // "try": with Cockpit's administrative access on, calls are root's (dockgated allows
    // uid 0 without polkit), as on Cockpit's own firewall page; otherwise polkit decides for
    // the logged-in user.
    connect() {
        const client = cockpit.dbus(NAME, { bus: "system", superuser: "try" });
        this.client = client;
        // The channel follows dockgated across restarts once it has seen it; a name that is
        // missing when the channel opens closes it with "not-found", and is not retried.
        client.addEventListener("close", (_event, options) => {
            if (this.client !== client)
                return;
            this.client = null;
            this.proxy = null;
            this.setState("absent");
            if (options.problem !== "not-found")
                console.warn("dockgate: the D-Bus channel closed:", options.problem, options.message);
            this.waitForName();
        });
        client.addEventListener("owner", (_event, owner) => this.setState(owner ? "ready" : "absent"));
        this.proxy = client.proxy(IFACE, PATH);
        this.proxy.addEventListener("changed", () => this.dispatchEvent(new Event("properties")));
        for (const [member, event] of Object.entries(SIGNALS))
            client.subscribe({ path: PATH, interface: IFACE, member }, () => this.dispatchEvent(new Event(event)));
    }

    // Until dockgated takes its name: NameOwnerChanged, then a channel of its own again.
    waitForName() {
        const bus = cockpit.dbus(BUS, { bus: "system" });
        let seen = false;
        // Once: the signal and the answer below may both say so.
        const appeared = () => {
            if (seen)
                return;
            seen = true;
            subscription.remove();
            bus.close();
            this.setState("connecting");
            this.connect();
        };
        const subscription = bus.subscribe(
            { path: "/org/freedesktop/DBus", interface: BUS, member: "NameOwnerChanged", arg0: NAME },
            (_path, _iface, _member, [, , owner]) => { if (owner) appeared() });
        // It may have come between the channel's close and the subscription.
        bus.call("/org/freedesktop/DBus", BUS, "GetNameOwner", [NAME], { type: "s" })
                .then(appeared, () => {});
        bus.call("/org/freedesktop/DBus", BUS, "ListActivatableNames", [], { type: "" })
                .then(([names]) => {
                    this.activatable = names.includes(NAME);
                    this.dispatchEvent(new Event("state"));
                }, () => {});
    }

    async call(method, signature, args) {
        if (!this.client)
            throw new Error("dockgated is not running");
        return await this.client.call(PATH, IFACE, method, args, { type: signature });
    }

    // What the caller may do: { read, expose, admin } -> "yes", "auth" or "no".
    async permissions() {
        const [answer] = await this.call("Permissions", "", []);
        return answer;
    }

    async listPorts() {
        const [ports] = await this.call("ListPorts", "", []);
        return ports.map(plain);
    }

    // Refused connections (or, auditing, those "deny" would refuse) seen since `since` (Unix
    // seconds), one entry per port, protocol, source and kind.
    async listRefused(since) {
        const [entries] = await this.call("ListRefused", "t", [since]);
        return entries.map(plain);
    }

    async listExposures() {
        const [exposures] = await this.call("ListExposures", "", []);
        return exposures.map(plain);
    }

    // Resolves to the new exposure's id.
    async expose(port, sources, ttlSeconds, { container, comment }) {
        const options = {};
        if (container)
            options.container = cockpit.variant("s", container);
        if (comment)
            options.comment = cockpit.variant("s", comment);
        const [id] = await this.call("Expose", "sasta{sv}", [port, sources, ttlSeconds, options]);
        return id;
    }

    async unexpose(id) {
        await this.call("Unexpose", "s", [id]);
    }

    // Resolves to [allowed, reason].
    async explain(source, port) {
        return await this.call("Explain", "ss", [source, port]);
    }
}

// An a{sv} dictionary as a plain object: the variants' values without their types.
function plain(dictionary) {
    return Object.fromEntries(Object.entries(dictionary).map(([key, variant]) => [key, variant.v]));
}
