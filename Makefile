# seqlens: `make app` serves the dashboard, `make test` runs every test. Both install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8501
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: app test test-fast chromium gl sample-data sample-agents bench clean-venv

$(VENV)/.runtime: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-dev.txt
	touch $@

# PNG, SVG and PDF export render in Chromium; without it (no apt-get) the app still serves, exporting HTML and CSV.
# `make app DATA="a.npz ~/.minari/datasets/mujoco/hopper/medium-v0" AGENT=path/to/agent` opens files in place
# (space-separated lists). The server listens on localhost; `make app HOST=0.0.0.0` serves every interface.
# `make app LOCAL=1` adds Home's "Open a file on this machine" box (app.py --local), which opens any file the
# server can read: for your own machine only, never behind a proxy or with HOST set. HOST and LOCAL are set
# here, not read from the environment (tcsh exports HOST as the machine's name): only `make app HOST=... LOCAL=1`
# changes them.
HOST = localhost
LOCAL =
app: $(VENV)/.runtime
	@$(MAKE) --no-print-directory chromium || echo "warning: chromium missing: figures export as HTML and CSV only"
	@$(MAKE) --no-print-directory gl || echo "warning: libEGL missing: MuJoCo episodes show state plots, not frames"
	$(PY) -m ui.serve app.py --server.port $(PORT) $(if $(strip $(HOST)),--server.address $(HOST)) \
		$(if $(strip $(DATA) $(AGENT) $(filter 1,$(LOCAL))),-- $(if $(strip $(DATA)),--data $(DATA)) \
		$(if $(strip $(AGENT)),--agent $(AGENT)) $(if $(filter 1,$(LOCAL)),--local))

# Debian's chromium drives the browser tests and kaleido's figure export (never a downloaded browser).
chromium:
	@if [ ! -x $(CHROMIUM) ]; then \
		echo "installing Debian chromium for browser tests and figure export"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium fonts-dejavu-core >/dev/null; \
	fi
	@test -x $(CHROMIUM) || { echo "chromium is still missing at $(CHROMIUM)"; exit 1; }

# MuJoCo renders episode frames headless through EGL (MUJOCO_GL=egl): Debian's libegl1 (Mesa) when it is missing.
gl:
	@if ! ldconfig -p | grep -q 'libEGL.so.1 '; then \
		echo "installing Debian libegl1 for headless MuJoCo frames"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq libegl1 libgl1 >/dev/null; \
	fi
	@ldconfig -p | grep -q 'libEGL.so.1 ' || { echo "libEGL is still missing: MuJoCo frames fall back to state plots"; exit 1; }

test: $(VENV)/.dev chromium gl
	$(PY) -m pytest --durations=30

# Everything except the browser tests (marked slow).
test-fast: $(VENV)/.dev
	$(PY) -m pytest -m "not slow"

# Regenerates sample_data/datasets (byte-identical by seed) and the README's return histograms.
sample-data: $(VENV)/.runtime chromium
	$(PY) cli.py make-samples --out-dir sample_data/datasets
	for f in sample_data/datasets/*.npz; do \
		$(PY) cli.py inspect $$f --histogram docs/images/returns_$$(basename $$f .npz).png > /dev/null || exit 1; \
	done

# Trains, evaluates and saves the 16 shipped agents (each < 10 min on 2 cores) and their README table.
sample-agents: $(VENV)/.runtime
	$(PY) cli.py make-agents --out-dir sample_data/agents

bench: $(VENV)/.runtime
	$(PY) cli.py bench

clean-venv:
	rm -rf $(VENV)
