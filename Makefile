# make build && make cockpit && sudo make install   (DESTDIR and PREFIX as usual; PROFILE=debug for a debug build)
PREFIX ?= /usr
DESTDIR ?=
PROFILE ?= release
BIN := target/$(PROFILE)
UNITDIR ?= $(PREFIX)/lib/systemd/system

.PHONY: build cockpit install

build:
	cargo build --release

# The Cockpit page: its own files, and the PatternFly CSS and fonts it uses, pinned by
# cockpit/package-lock.json. Nothing is fetched when the page runs.
COCKPIT_FILES := manifest.json index.html index.js client.js format.js theme.js dockgate.css
PATTERNFLY := cockpit/node_modules/@patternfly/patternfly

cockpit: cockpit/node_modules/.package-lock.json
	rm -rf cockpit/dist
	install -Dm644 -t cockpit/dist $(addprefix cockpit/,$(COCKPIT_FILES))
	install -Dm644 $(PATTERNFLY)/patternfly.min.css cockpit/dist/patternfly.css
	@# The fonts patternfly.css refers to; its background images are for login pages.
	grep -o 'url(assets/[^)]*)' $(PATTERNFLY)/patternfly.min.css | sed 's/^url(//; s/)$$//' | sort -u | \
		while read -r font; do install -Dm644 $(PATTERNFLY)/$$font cockpit/dist/$$font || exit 1; done

# npm writes node_modules/.package-lock.json: newer than the lock file once npm ci has run.
cockpit/node_modules/.package-lock.json: cockpit/package.json cockpit/package-lock.json
	cd cockpit && npm ci --no-audit --no-fund

install:
	@test -x $(BIN)/dockgated && test -x $(BIN)/dockgatectl || { echo "run make build first" >&2; exit 1; }
	@test -e cockpit/dist/manifest.json || { echo "run make cockpit first (the Cockpit page)" >&2; exit 1; }
	install -Dm755 $(BIN)/dockgated $(DESTDIR)$(PREFIX)/bin/dockgated
	install -Dm755 $(BIN)/dockgatectl $(DESTDIR)$(PREFIX)/bin/dockgatectl
	install -Dm644 systemd/dockgate.service $(DESTDIR)$(UNITDIR)/dockgate.service
	install -Dm644 systemd/docker.service.d/dockgate.conf $(DESTDIR)$(UNITDIR)/docker.service.d/dockgate.conf
	install -Dm644 dbus/org.dockgate.Dockgate1.conf $(DESTDIR)$(PREFIX)/share/dbus-1/system.d/org.dockgate.Dockgate1.conf
	install -Dm644 dbus/org.dockgate.Dockgate1.service $(DESTDIR)$(PREFIX)/share/dbus-1/system-services/org.dockgate.Dockgate1.service
	install -Dm644 dbus/org.dockgate.Dockgate1.xml $(DESTDIR)$(PREFIX)/share/dbus-1/interfaces/org.dockgate.Dockgate1.xml
	install -Dm644 polkit/org.dockgate.Dockgate1.policy $(DESTDIR)$(PREFIX)/share/polkit-1/actions/org.dockgate.Dockgate1.policy
	install -Dm644 polkit/50-dockgate.rules.example $(DESTDIR)$(PREFIX)/share/doc/dockgate/50-dockgate.rules.example
	install -Dm644 polkit/60-dockgate-web-team.rules.example $(DESTDIR)$(PREFIX)/share/doc/dockgate/60-dockgate-web-team.rules.example
	install -dm755 $(DESTDIR)/etc/dockgate
	cd cockpit/dist && find . -type f -exec install -Dm644 {} $(abspath $(DESTDIR))$(PREFIX)/share/cockpit/dockgate/{} \;
