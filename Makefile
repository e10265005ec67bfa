# make build && sudo make install        (DESTDIR and PREFIX as usual; PROFILE=debug for a debug build)
PREFIX ?= /usr
DESTDIR ?=
PROFILE ?= release
BIN := target/$(PROFILE)
UNITDIR ?= $(PREFIX)/lib/systemd/system

.PHONY: build install

build:
	cargo build --release

install:
	@test -x $(BIN)/dockgated && test -x $(BIN)/dockgatectl || { echo "run make build first" >&2; exit 1; }
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
