# make && make cockpit && sudo make install
#     the binaries, man pages, completions, the Cockpit page and every file dockgate needs;
#     DESTDIR and the directories below as usual (defaults: Fedora's)
# make dist
#     the two tarballs rpm/dockgate.spec builds from, in target/dist/
#
# PROFILE is cargo's profile: release (default), debug, or rpm (rpm/dockgate.spec's %cargo_build).
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)

PREFIX ?= /usr
BINDIR ?= $(PREFIX)/bin
DATADIR ?= $(PREFIX)/share
MANDIR ?= $(DATADIR)/man
DOCDIR ?= $(DATADIR)/doc/dockgate
SYSCONFDIR ?= /etc
SHAREDSTATEDIR ?= /var/lib
UNITDIR ?= $(PREFIX)/lib/systemd/system
DBUSDIR ?= $(DATADIR)/dbus-1
POLKITACTIONDIR ?= $(DATADIR)/polkit-1/actions
BASHCOMPLETIONDIR ?= $(DATADIR)/bash-completion/completions
ZSHCOMPLETIONDIR ?= $(DATADIR)/zsh/site-functions
FISHCOMPLETIONDIR ?= $(DATADIR)/fish/vendor_completions.d
DESTDIR ?=
INSTALL ?= install

PROFILE ?= release
BIN ?= target/$(PROFILE)
# The man pages and completions made from the clap definitions (examples/gen-docs.rs).
GENERATED ?= target/generated
DISTDIR ?= target/dist
# What make dist packs: a commit, a tag, or the object `git stash create` makes of the tree.
DIST_REF ?= HEAD
CARGO ?= cargo
# cargo calls the debug profile "dev" but puts its output in target/debug.
CARGO_PROFILE = $(if $(filter debug,$(PROFILE)),dev,$(PROFILE))

.PHONY: build docs cockpit install dist

build:
	$(CARGO) build --locked --profile $(CARGO_PROFILE) --bins --example gen-docs
	$(MAKE) docs

docs:
	@test -x $(BIN)/examples/gen-docs || { echo "run make build first" >&2; exit 1; }
	$(BIN)/examples/gen-docs $(GENERATED)

# install makes them when they are not there yet (the generator is built, nothing compiles).
$(GENERATED)/man/dockgated.8:
	@$(MAKE) --no-print-directory docs

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

# The paths inside the unit and the docker.service drop-in follow BINDIR.
install: $(GENERATED)/man/dockgated.8
	@test -x $(BIN)/dockgated && test -x $(BIN)/dockgatectl || { echo "run make build first" >&2; exit 1; }
	@test -e cockpit/dist/manifest.json || { echo "run make cockpit first (the Cockpit page)" >&2; exit 1; }
	$(INSTALL) -Dm755 $(BIN)/dockgated $(DESTDIR)$(BINDIR)/dockgated
	$(INSTALL) -Dm755 $(BIN)/dockgatectl $(DESTDIR)$(BINDIR)/dockgatectl
	$(INSTALL) -dm755 $(DESTDIR)$(UNITDIR)/docker.service.d
	sed 's|/usr/bin/dockgate|$(BINDIR)/dockgate|g' systemd/dockgate.service >$(DESTDIR)$(UNITDIR)/dockgate.service
	sed 's|/usr/bin/dockgate|$(BINDIR)/dockgate|g' systemd/docker.service.d/dockgate.conf >$(DESTDIR)$(UNITDIR)/docker.service.d/dockgate.conf
	@# The metrics timer and its service (dockgatectl metrics for node_exporter), not enabled.
	sed 's|/usr/bin/dockgate|$(BINDIR)/dockgate|g' systemd/dockgate-metrics.service >$(DESTDIR)$(UNITDIR)/dockgate-metrics.service
	$(INSTALL) -m644 systemd/dockgate-metrics.timer $(DESTDIR)$(UNITDIR)/dockgate-metrics.timer
	chmod 644 $(DESTDIR)$(UNITDIR)/dockgate.service $(DESTDIR)$(UNITDIR)/docker.service.d/dockgate.conf \
		$(DESTDIR)$(UNITDIR)/dockgate-metrics.service
	$(INSTALL) -Dm644 dbus/org.dockgate.Dockgate1.conf $(DESTDIR)$(DBUSDIR)/system.d/org.dockgate.Dockgate1.conf
	$(INSTALL) -Dm644 dbus/org.dockgate.Dockgate1.service $(DESTDIR)$(DBUSDIR)/system-services/org.dockgate.Dockgate1.service
	$(INSTALL) -Dm644 dbus/org.dockgate.Dockgate1.xml $(DESTDIR)$(DBUSDIR)/interfaces/org.dockgate.Dockgate1.xml
	$(INSTALL) -Dm644 polkit/org.dockgate.Dockgate1.policy $(DESTDIR)$(POLKITACTIONDIR)/org.dockgate.Dockgate1.policy
	$(INSTALL) -Dm644 polkit/50-dockgate.rules.example $(DESTDIR)$(DOCDIR)/50-dockgate.rules.example
	$(INSTALL) -Dm644 polkit/60-dockgate-web-team.rules.example $(DESTDIR)$(DOCDIR)/60-dockgate-web-team.rules.example
	$(INSTALL) -Dm644 $(GENERATED)/man/dockgated.8 $(DESTDIR)$(MANDIR)/man8/dockgated.8
	$(INSTALL) -Dm644 $(GENERATED)/man/dockgatectl.1 $(DESTDIR)$(MANDIR)/man1/dockgatectl.1
	$(INSTALL) -Dm644 docs/dockgate.toml.5 $(DESTDIR)$(MANDIR)/man5/dockgate.toml.5
	$(INSTALL) -Dm644 $(GENERATED)/completions/bash/dockgatectl $(DESTDIR)$(BASHCOMPLETIONDIR)/dockgatectl
	$(INSTALL) -Dm644 $(GENERATED)/completions/bash/dockgated $(DESTDIR)$(BASHCOMPLETIONDIR)/dockgated
	$(INSTALL) -Dm644 $(GENERATED)/completions/zsh/_dockgatectl $(DESTDIR)$(ZSHCOMPLETIONDIR)/_dockgatectl
	$(INSTALL) -Dm644 $(GENERATED)/completions/zsh/_dockgated $(DESTDIR)$(ZSHCOMPLETIONDIR)/_dockgated
	$(INSTALL) -Dm644 $(GENERATED)/completions/fish/dockgatectl.fish $(DESTDIR)$(FISHCOMPLETIONDIR)/dockgatectl.fish
	$(INSTALL) -Dm644 $(GENERATED)/completions/fish/dockgated.fish $(DESTDIR)$(FISHCOMPLETIONDIR)/dockgated.fish
	$(INSTALL) -dm755 $(DESTDIR)$(SYSCONFDIR)/dockgate
	@# An admin's config is never overwritten.
	test -e $(DESTDIR)$(SYSCONFDIR)/dockgate/dockgate.toml \
		|| $(INSTALL) -m644 config/dockgate.toml $(DESTDIR)$(SYSCONFDIR)/dockgate/dockgate.toml
	$(INSTALL) -dm700 $(DESTDIR)$(SHAREDSTATEDIR)/dockgate
	cd cockpit/dist && find . -type f -exec $(INSTALL) -Dm644 {} $(abspath $(DESTDIR))$(DATADIR)/cockpit/dockgate/{} \;

# Source0: what git has at DIST_REF (uncommitted changes are not in HEAD), and the Cockpit page
# built from the tree by make cockpit (as Cockpit's own release tarballs ship their dist/), so
# that rpmbuild needs no npm. Source1: every crate of Cargo.lock, so that rpmbuild needs no
# network. Both reproducible: the commit's time, no owners, sorted names, gzip without a name
# or time stamp.
dist: cockpit
	@[ "$(DIST_REF)" != HEAD ] || git diff --quiet HEAD \
		|| echo "make dist: uncommitted changes are not in the tarball" >&2
	rm -rf $(DISTDIR)/vendor-tree && mkdir -p $(DISTDIR)/vendor-tree
	git archive --format=tar --prefix=dockgate-$(VERSION)/ $(DIST_REF) >$(DISTDIR)/dockgate-$(VERSION).tar
	tar --append -f $(DISTDIR)/dockgate-$(VERSION).tar --transform 's,^,dockgate-$(VERSION)/,' \
		--sort=name --owner=0 --group=0 --numeric-owner \
		--mtime=@$$(git log -1 --format=%ct $(DIST_REF)) cockpit/dist
	gzip -n -9 -f $(DISTDIR)/dockgate-$(VERSION).tar
	$(CARGO) vendor --locked --quiet $(DISTDIR)/vendor-tree/vendor >/dev/null
	tar -C $(DISTDIR)/vendor-tree --sort=name --owner=0 --group=0 --numeric-owner \
		--mtime=@$$(git log -1 --format=%ct $(DIST_REF)) -cf - vendor \
		| gzip -n >$(DISTDIR)/dockgate-$(VERSION)-vendor.tar.gz
	rm -rf $(DISTDIR)/vendor-tree
	@ls -l $(DISTDIR)/dockgate-$(VERSION).tar.gz $(DISTDIR)/dockgate-$(VERSION)-vendor.tar.gz
