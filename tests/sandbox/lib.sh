# Functions shared by tests/sandbox/sandbox (which builds the world) and sandbox-ctl (which tests
# use to restart, kill and probe inside it). Sourced, never run.
#
# Layout inside the sandbox (all of it on a private tmpfs /run, gone when the namespace ends):
#   /run/sandbox/pids/NAME    PID of every daemon we started, and only those get signalled
#   /run/sandbox/logs/NAME    daemon output
#   /run/sandbox/env          stack and rootfs, for sandbox-ctl
#   /run/sandbox/docker       dockerd data root; /run/sandbox/containerd: containerd root

SANDBOX_RUN=/run/sandbox
SANDBOX_CACHE=${DOCKGATE_SANDBOX_CACHE:-/var/cache/dockgate}
# Every stack but bookworm is a Debian suite's rootfs made by debootstrap with these packages,
# cached in $SANDBOX_CACHE/SUITE-rootfs, its daemons run by chroot (tests/sandbox/sandbox).
ROOTFS_PACKAGES=firewalld,docker.io,docker-cli,nftables,iptables,iproute2,dbus,polkitd,busybox-static,procps
# Bump when ROOTFS_PACKAGES or the rootfs preparation changes, so cached rootfs get rebuilt.
ROOTFS_VERSION=1

die() { echo "sandbox: $*" >&2; exit 1; }
log() { echo "sandbox: $*" >&2; }

# The guard every daemon start goes through: firewalld or dockerd in the machine's own network
# namespace would take over the machine's firewall and cut its connections.
require_sandbox_netns() {
    [ -n "${SANDBOX_HOST_NETNS:-}" ] || die "not inside a sandbox (SANDBOX_HOST_NETNS unset)"
    [ "$(readlink /proc/self/ns/net)" != "$SANDBOX_HOST_NETNS" ] \
        || die "refusing: this is the machine's own network namespace"
}

# The stack's rootfs (empty for bookworm, the machine's own packages).
case ${DOCKGATE_STACK:-} in
    bookworm) ROOTFS="" ;;
    sid|trixie) ROOTFS=$SANDBOX_CACHE/$DOCKGATE_STACK-rootfs ;;
    *) echo "sandbox: DOCKGATE_STACK must be bookworm, trixie or sid, not '${DOCKGATE_STACK:-}'" >&2; exit 2 ;;
esac
# Programs of the stack under test: the host's for bookworm, the rootfs's otherwise. A command
# prefix rather than a function, so that a daemon started with it keeps the PID we record
# (chroot execs its program; a backgrounded shell function would be a subshell). A clean PATH:
# the chroot shares /run, and our wrappers in /run/sandbox/bin must not be found from inside it.
if [ -n "$ROOTFS" ]; then
    STACK=(chroot "$ROOTFS" /usr/bin/env PATH=/usr/sbin:/usr/bin:/sbin:/bin)
else
    STACK=()
fi
in_stack() { "${STACK[@]}" "$@"; }

# Start NAME in the background, record its PID. The command must not fork away from $!.
start_daemon() {
    local name=$1; shift
    require_sandbox_netns
    mkdir -p "$SANDBOX_RUN/pids" "$SANDBOX_RUN/logs"
    if daemon_alive "$name"; then
        die "$name already runs (pid $(cat "$SANDBOX_RUN/pids/$name"))"
    fi
    "$@" >>"$SANDBOX_RUN/logs/$name" 2>&1 </dev/null &
    echo $! >"$SANDBOX_RUN/pids/$name"
}

daemon_pid() { cat "$SANDBOX_RUN/pids/$1" 2>/dev/null; }

daemon_alive() {
    local pid
    pid=$(daemon_pid "$1") || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ "$(state_of "$pid")" != Z ]
}

state_of() { awk '{print $3}' "/proc/$1/stat" 2>/dev/null; }

# Stop exactly the recorded PID: SIGTERM (or the given signal), wait, then SIGKILL.
stop_daemon() {
    local name=$1 signal=${2:-TERM} pid i
    pid=$(daemon_pid "$name") || return 0
    rm -f "$SANDBOX_RUN/pids/$name"
    kill -0 "$pid" 2>/dev/null || return 0
    kill "-$signal" "$pid" 2>/dev/null
    for i in $(seq 1 200); do
        kill -0 "$pid" 2>/dev/null && [ "$(state_of "$pid")" != Z ] || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    log "$name (pid $pid) ignored SIG$signal for 20 s, killing it"
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || true
    return 0
}

wait_for() {
    local what=$1 tries=$2; shift 2
    local i
    for i in $(seq 1 "$tries"); do
        "$@" >/dev/null 2>&1 && return 0
        # A daemon that already exited will not come up: say so at once.
        if [ -e "$SANDBOX_RUN/pids/$what" ] && ! daemon_alive "$what"; then
            die "$what exited before it came up; last lines of its log:$(echo; tail -n 20 "$SANDBOX_RUN/logs/$what" 2>/dev/null)"
        fi
        sleep 0.1
    done
    die "$what did not come up; last lines of its log:$(echo; tail -n 20 "$SANDBOX_RUN/logs/$what" 2>/dev/null)"
}

start_dbus() {
    mkdir -p /run/dbus
    # --systemd-activation, as on a systemd host (Debian's dbus.service): an activation file
    # with SystemdService= asks systemd to start that unit. Here only the nested systemd of
    # start_systemd can answer, and only tests/sandbox_systemd.rs installs such a file.
    start_daemon dbus dbus-daemon --system --nofork --nopidfile --systemd-activation
    wait_for dbus 100 test -S /run/dbus/system_bus_socket
}

start_polkitd() {
    start_daemon polkitd /usr/lib/polkit-1/polkitd --no-debug
    wait_for polkitd 100 busctl --system status org.freedesktop.PolicyKit1
}

start_firewalld() {
    # --log-target console keeps firewalld's log in our log file, not the machine's /var/log.
    start_daemon firewalld "${STACK[@]}" firewalld --nofork --nopid --log-target console
    wait_for firewalld 300 firewalld_running
}

firewalld_running() { [ "$(in_stack firewall-cmd --state 2>/dev/null)" = running ]; }

start_containerd() {
    mkdir -p "$SANDBOX_RUN/containerd" /run/containerd
    start_daemon containerd "${STACK[@]}" containerd \
        --root "$SANDBOX_RUN/containerd/root" --state /run/containerd/state \
        --address /run/containerd/containerd.sock
    wait_for containerd 100 test -S /run/containerd/containerd.sock
}

start_dockerd() {
    local extra=() more=() major
    # Before Docker 27 (bookworm's 20.10, trixie's 26) ip6tables is an experimental feature;
    # from 27 on it is on by default (moby#47747).
    major=$(in_stack dockerd --version | sed -n 's/^Docker version \([0-9]*\)\..*/\1/p')
    [ -n "$major" ] || die "cannot tell dockerd's version from '$(in_stack dockerd --version 2>&1)'"
    [ "$major" -lt 27 ] && extra=(--experimental --ip6tables)
    # A test's own arguments (e.g. --live-restore), one line, until it removes the file.
    if [ -s "$SANDBOX_RUN/dockerd-args" ]; then
        # read fails at an end of file without a newline, having read the line all the same.
        read -ra more <"$SANDBOX_RUN/dockerd-args" || true
        extra+=("${more[@]}")
    fi
    start_daemon dockerd "${STACK[@]}" dockerd \
        --data-root "$SANDBOX_RUN/docker" --exec-root /run/docker --pidfile /run/docker.pid \
        -H unix:///run/docker.sock --containerd /run/containerd/containerd.sock \
        --ipv6 --fixed-cidr-v6 fd00:d0c::/64 "${extra[@]}"
    wait_for dockerd 300 docker info
}

# The test image: busybox for httpd and a shell, socat (with the host's libraries) for UDP echo.
# Built from local files because no registry is reachable.
build_image() {
    local root=$SANDBOX_RUN/image/root lib
    rm -rf "$SANDBOX_RUN/image"
    mkdir -p "$root/bin" "$root/www" "$root/tmp"
    cp /bin/busybox "$root/bin/busybox"
    for applet in $(/bin/busybox --list); do
        [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
    done
    cp /usr/bin/socat "$root/bin/socat"
    for lib in $(ldd /usr/bin/socat | grep -o '/[^ ]*'); do
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
    echo "hello from the sandbox" >"$root/www/index.html"
    tar -C "$root" -cf "$SANDBOX_RUN/image/bb.tar" .
    docker import "$SANDBOX_RUN/image/bb.tar" bb >/dev/null
}

# Client namespace N (1..99): an outside host at 10.99.N.2 / fd99:N::2 behind the sandbox's
# external interface extN (10.99.N.1 / fd99:N::1). Extra source addresses for that client can be
# added with add_client_address.
add_client() {
    local n=$1 name=client$1
    ip netns add "$name"
    ip link add "ext$n" type veth peer name eth0 netns "$name"
    ip addr add "10.99.$n.1/24" dev "ext$n"
    ip -6 addr add "fd99:$n::1/64" dev "ext$n" nodad
    ip link set "ext$n" up
    ip -n "$name" link set lo up
    ip -n "$name" addr add "10.99.$n.2/24" dev eth0
    ip -n "$name" -6 addr add "fd99:$n::2/64" dev eth0 nodad
    ip -n "$name" link set eth0 up
    ip -n "$name" route add default via "10.99.$n.1"
    ip -n "$name" -6 route add default via "fd99:$n::1"
}

# Another source address for client N, on its own link, routed back by the sandbox.
add_client_address() {
    local n=$1 addr=$2
    case $addr in
        # Deprecated (preferred_lft 0): used only when bound explicitly, never picked as the
        # client's source instead of fd99:N::2 (IPv6 prefers the longest matching prefix).
        *:*) ip -n "client$n" -6 addr add "$addr/128" dev eth0 nodad preferred_lft 0
             ip -6 route replace "$addr/128" via "fd99:$n::2" dev "ext$n" ;;
        *)   ip -n "client$n" addr add "$addr/32" dev eth0
             ip route replace "$addr/32" via "10.99.$n.2" dev "ext$n" ;;
    esac
}

# A real systemd (the machine's: 252 on Debian 12, as on RHEL 9) as PID 1 of a nested PID, mount,
# cgroup and UTS namespace, to run dockgate.service as installed. It shares the sandbox's
# network and /run (the system bus, Docker's socket), loads units only from
# $SANDBOX_SYSTEMD/units and a private /etc/systemd/system (SYSTEMD_UNIT_PATH: none of the
# machine's units; `systemctl enable` links there, as on a host), runs journald with a journal in
# /run, and sees $SANDBOX_SYSTEMD/etc-dockgate as /etc/dockgate, $SANDBOX_SYSTEMD/etc-systemd as
# /etc/systemd/system and $SANDBOX_SYSTEMD/var-lib as /var/lib. Its cgroup tree is a child of the machine's cgroup2
# hierarchy, removed when it stops.
SANDBOX_SYSTEMD=$SANDBOX_RUN/systemd

start_systemd() {
    local units=$SANDBOX_SYSTEMD/units target unit cgroup2
    [ -x /lib/systemd/systemd ] || die "systemd is not installed"
    cgroup2=$(findmnt -n -t cgroup2 -o TARGET | head -n 1)
    [ -n "$cgroup2" ] || die "no cgroup2 hierarchy to give systemd a cgroup tree in"
    mkdir -p "$units" "$SANDBOX_SYSTEMD/etc-dockgate" "$SANDBOX_SYSTEMD/etc-systemd" "$SANDBOX_SYSTEMD/var-lib"
    # What a unit's default dependencies and Type=dbus ask for, empty: this systemd boots
    # nothing but what a test starts. dbus.service stands for the sandbox's dbus-daemon, which
    # already runs: systemd connects to the bus once dbus.socket and dbus.service are active.
    for target in sysinit basic sockets shutdown multi-user; do
        printf '[Unit]\nDescription=%s (sandbox stub)\n' "$target" >"$units/$target.target"
    done
    printf '[Socket]\nListenStream=%s/dbus-stub.socket\n' "$SANDBOX_SYSTEMD" >"$units/dbus.socket"
    printf '[Service]\nExecStart=/bin/sleep infinity\n' >"$units/dbus.service"
    for unit in systemd-journald.service systemd-journald.socket; do
        ln -sf "/lib/systemd/system/$unit" "$units/$unit"
    done
    printf '[Unit]\nWants=dbus.socket dbus.service systemd-journald.socket systemd-journald.service\n' \
        >"$units/sandbox.target"
    # /etc/dockgate must exist to be mounted over; if we make it, we take it away again.
    if [ ! -e /etc/dockgate ]; then
        mkdir /etc/dockgate
        touch "$SANDBOX_SYSTEMD/made-etc-dockgate"
    fi
    [ -e /run/systemd ] || touch "$SANDBOX_SYSTEMD/made-run-systemd"
    echo "$cgroup2/dockgate-sandbox-$$" >"$SANDBOX_SYSTEMD/cgroup"
    mkdir "$(cat "$SANDBOX_SYSTEMD/cgroup")"
    # Into our own cgroup first, so that the cgroup namespace's root is that cgroup.
    start_daemon systemd bash -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' _ "$(cat "$SANDBOX_SYSTEMD/cgroup")" \
        unshare --pid --kill-child --mount --cgroup --uts --mount-proc \
        bash -c 'mount -t cgroup2 cgroup2 /sys/fs/cgroup &&
                 mount --bind "$1/etc-dockgate" /etc/dockgate &&
                 mount --bind "$1/etc-systemd" /etc/systemd/system &&
                 mount --bind "$1/var-lib" /var/lib &&
                 export container=dockgate-sandbox SYSTEMD_UNIT_PATH="/etc/systemd/system:$1/units" &&
                 exec /lib/systemd/systemd --system --unit=sandbox.target' _ "$SANDBOX_SYSTEMD"
    wait_for systemd 200 systemd_booted
}

# PID 1 of the nested namespace (the child of the unshare we recorded).
systemd_init_pid() {
    local pid
    pid=$(daemon_pid systemd) || return 1
    cat "/proc/$pid/task/$pid/children" 2>/dev/null | awk '{print $1}'
}

# systemctl, journalctl and friends from inside systemd's namespaces: from outside, systemd
# refuses some of the connections of a peer whose pid it cannot see.
in_systemd() {
    local init
    init=$(systemd_init_pid)
    [ -n "$init" ] || die "systemd is not running"
    nsenter --target "$init" --mount --pid "$@"
}

systemd_booted() { [ "$(in_systemd systemctl is-active sandbox.target 2>/dev/null)" = active ]; }

# Everything in the nested namespace dies with its PID 1, which dies with the unshare we
# recorded (--kill-child); that unshare ignores SIGTERM, hence SIGKILL.
stop_systemd() {
    local i cgroup
    [ -e "$SANDBOX_SYSTEMD" ] || return 0
    stop_daemon systemd KILL
    cgroup=$(cat "$SANDBOX_SYSTEMD/cgroup" 2>/dev/null) || cgroup=""
    for i in $(seq 1 50); do
        [ -n "$cgroup" ] && [ -d "$cgroup" ] || break
        find "$cgroup" -depth -type d -exec rmdir {} + 2>/dev/null && break
        sleep 0.1
    done
    [ -n "$cgroup" ] && [ -d "$cgroup" ] && log "cgroup $cgroup is still busy; left in place"
    if [ -e "$SANDBOX_SYSTEMD/made-etc-dockgate" ]; then
        rmdir /etc/dockgate 2>/dev/null || log "/etc/dockgate is not empty; left in place"
    fi
    # The tests after this one find /run as the sandbox made it: no systemd, no journal.
    [ -e "$SANDBOX_SYSTEMD/made-run-systemd" ] && rm -rf /run/systemd /run/log
    rm -rf "$SANDBOX_SYSTEMD"
    return 0
}
