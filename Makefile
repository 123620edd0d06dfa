# meshnode: the two commands a new user needs are `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench venv clean install-service uninstall-service

venv: $(STAMP)

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || \
	  { echo "meshnode needs Python >= 3.11 (found: $$($(PYTHON) --version 2>&1))"; exit 1; }
	@$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  echo ""; \
	  echo "Could not create a virtual environment: the venv module is missing."; \
	  echo "On Debian / Raspberry Pi OS install it with:  sudo apt install python3-venv"; \
	  exit 1; }

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/meshnode run

test: $(STAMP)
	HYPOTHESIS_PROFILE=$${HYPOTHESIS_PROFILE:-ci} $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check meshnode tests
	$(BIN)/ruff format --check meshnode tests
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

bench: $(STAMP)
	$(BIN)/python -m meshnode.bench ingest --json
	$(BIN)/python -m meshnode.bench reopen --json
	$(BIN)/python -m meshnode.bench replication --json
	$(BIN)/python -m meshnode.bench lan --json
	$(BIN)/python -m meshnode.bench radio --json
	$(BIN)/python -m meshnode.bench idle --json
	$(BIN)/python -m meshnode.bench usb --json
	$(BIN)/python -m meshnode.bench web --json

# A village box: `sudo make install-service` installs meshnode into a venv under $(PREFIX)
# (Debian's PEP 668 forbids system pip), the systemd units, the system user, the udev rule
# and a default /etc/meshnode/meshnode.toml (kept if present), then enables and starts it.
# `sudo make uninstall-service` removes all that but keeps data and config (PURGE=1: both).
PREFIX      ?= /opt/meshnode
DESTDIR     ?=
UNITDIR     ?= /etc/systemd/system
SYSUSERSDIR ?= /usr/lib/sysusers.d
UDEVDIR     ?= /etc/udev/rules.d
CONFDIR     ?= /etc/meshnode
STATEDIR    ?= /var/lib/meshnode
SYSTEMCTL   ?= systemctl
SYSUSERS    ?= systemd-sysusers
UDEVADM     ?= udevadm
INSTALL_VENV ?= yes
UNITS       := $(wildcard systemd/*.service systemd/*.socket)
RULES       := $(wildcard systemd/*.rules)

install-service:
	@test -n "$(DESTDIR)" || test "$$(id -u)" = 0 || \
	  { echo "install-service changes the system: run it as root (sudo make install-service)"; exit 1; }
	@if [ "$(INSTALL_VENV)" = yes ]; then \
	  test -x $(PREFIX)/bin/python || $(PYTHON) -m venv $(PREFIX) || \
	    { echo "could not create $(PREFIX): sudo apt install python3-venv"; exit 1; }; \
	  $(PREFIX)/bin/python -m pip install --quiet --upgrade pip && \
	  $(PREFIX)/bin/python -m pip install --quiet --upgrade . ; \
	fi
	install -d $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(CONFDIR)
	install -m 0644 $(UNITS) $(DESTDIR)$(UNITDIR)/
	install -m 0644 systemd/meshnode.sysusers $(DESTDIR)$(SYSUSERSDIR)/meshnode.conf
	@if [ -n "$(RULES)" ]; then install -d $(DESTDIR)$(UDEVDIR) && \
	  install -m 0644 $(RULES) $(DESTDIR)$(UDEVDIR)/; fi
	@test -e $(DESTDIR)$(CONFDIR)/meshnode.toml || \
	  install -m 0644 systemd/meshnode.toml $(DESTDIR)$(CONFDIR)/meshnode.toml
	@if [ -z "$(DESTDIR)" ]; then \
	  $(SYSUSERS) $(SYSUSERSDIR)/meshnode.conf && \
	  { $(UDEVADM) control --reload 2>/dev/null || \
	    echo "note: udevd is not running (a container?): the USB drive rule is installed" \
	      "and takes effect when udevd starts"; } && \
	  $(SYSTEMCTL) daemon-reload && \
	  $(SYSTEMCTL) enable meshnode-web.socket && \
	  $(SYSTEMCTL) enable --now meshnode.service && \
	  echo "meshnode is running: systemctl status meshnode; journalctl -u meshnode -f"; \
	fi

uninstall-service:
	@test -n "$(DESTDIR)" || test "$$(id -u)" = 0 || \
	  { echo "uninstall-service changes the system: run it as root"; exit 1; }
	-@if [ -z "$(DESTDIR)" ]; then $(SYSTEMCTL) disable --now meshnode.service meshnode-web.socket; fi
	rm -f $(addprefix $(DESTDIR)$(UNITDIR)/,$(notdir $(UNITS)))
	rm -f $(addprefix $(DESTDIR)$(UDEVDIR)/,$(notdir $(RULES)))
	rm -f $(DESTDIR)$(SYSUSERSDIR)/meshnode.conf
	@if [ -z "$(DESTDIR)" ]; then $(SYSTEMCTL) daemon-reload; \
	  $(UDEVADM) control --reload 2>/dev/null || true; fi
	@if [ "$(PURGE)" = 1 ]; then rm -rf $(DESTDIR)$(STATEDIR) $(DESTDIR)$(CONFDIR) $(PREFIX) && \
	  echo "removed meshnode's data ($(STATEDIR)), config ($(CONFDIR)) and $(PREFIX)"; \
	else echo "kept $(STATEDIR) (the node's identity and feeds) and $(CONFDIR);" \
	  "PURGE=1 removes them"; fi

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis
