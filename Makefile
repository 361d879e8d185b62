# The two commands the README opens with: `make run` and `make test`. Both are idempotent and
# install what they need (virtualenv, packages, model weights, a Redis if none answers).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export CUTOUT_REDIS_URL ?= redis://127.0.0.1:6379/0
export CUTOUT_MODEL_DIR ?= $(HOME)/.cache/cutout
# The demo page's browser test drives this chromium (Playwright cannot download browsers here).
export CUTOUT_CHROMIUM ?= /usr/bin/chromium

.PHONY: all setup weights browser wasm emscripten run test lint clean-venv promtool

# `make` alone builds the browser's effects module (the rest installs itself on use).
all: setup wasm

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	# celery-batches 0.11 pins celery<5.7 but works with 5.7.0 (see pyproject.toml).
	$(PY) -m pip install --quiet --no-deps celery-batches==0.11
	# The tests' InSPyReNet peers; both declare torchvision, which does not import here.
	$(PY) -m pip install --quiet --no-deps transparent-background==1.3.4 timm==1.0.31
	touch $@

setup: $(VENV)/.installed

weights: setup
	$(PY) -m workers.models fetch

# Debian's chromium, installed with apt when missing and we are root; otherwise stop here,
# loudly: the browser test must run, not be skipped.
browser:
	@test -x "$(CUTOUT_CHROMIUM)" || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else \
	    echo "no chromium at $(CUTOUT_CHROMIUM): install Debian's chromium package" \
	      "(apt-get install chromium) or set CUTOUT_CHROMIUM" >&2; exit 1; \
	  fi; }
	@test -x "$(CUTOUT_CHROMIUM)" || { echo "chromium was not installed" >&2; exit 1; }

# The browser's effects (wasm/ → api/static/wasm/, docs/browser-effects.md), built with
# Debian's Emscripten, installed with apt when missing and we are root (~20 s; its system
# libraries come prebuilt, so the first build takes seconds, from any HOME).
WASM_BUILT := api/static/wasm/manifest.json
wasm: $(WASM_BUILT)

$(WASM_BUILT): wasm/effects_processor.cpp wasm/cutout-effects.js wasm/build.sh | emscripten
	bash wasm/build.sh

emscripten:
	@command -v emcc >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq emscripten >/dev/null 2>&1 \
	      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq emscripten; }; }; \
	  else \
	    echo "no emcc: install Debian's emscripten package (apt-get install emscripten)" >&2; exit 1; \
	  fi; }
	@command -v emcc >/dev/null || { echo "emscripten was not installed" >&2; exit 1; }

# Local use: API keys off unless the caller sets CUTOUT_AUTH=on (and CUTOUT_API_KEYS).
run: export CUTOUT_AUTH ?= off
run: weights
	@$(MAKE) --no-print-directory wasm || echo "  (no browser effects module: the demo renders every effect on the server)"
	$(PY) -m devtools.redis_server ensure "$(CUTOUT_REDIS_URL)"
	@echo ""
	@if [ "$$CUTOUT_AUTH" = "off" ]; then \
	  echo "  !!! API KEYS ARE OFF (CUTOUT_AUTH=off): anyone who reaches :8000 can submit and"; \
	  echo "  !!! read every job. For local use only: see CUTOUT_AUTH in docs/configuration.md."; \
	  echo ""; \
	fi
	@echo "  cutout is starting: API http://127.0.0.1:8000  Flower http://127.0.0.1:5555"
	@echo "  try it in a browser:  http://127.0.0.1:8000/"
	@echo "  Flower's login is made up for this run and printed below (FLOWER_BASIC_AUTH sets one)"
	@echo "  metrics: http://127.0.0.1:8000/metrics, workers :9101 (gpu) and :9102 (io)"
	@echo "  send a photo:  curl -F image=@photo.jpg http://127.0.0.1:8000/api/v2/jobs"
	@echo "  then poll the Location it answers:  curl http://127.0.0.1:8000/api/v2/jobs/<id>"
	@echo "  or follow it live:  curl -N http://127.0.0.1:8000/api/v2/jobs/<id>/events (docs/events.md)"
	@# Which engine the gpu worker runs, and on a first run what it switches to (docs/engines.md).
	@echo "  $$($(PY) -m workers.engines.plan)"
	@echo ""
	# The Procfile under supervisord, which restarts any process that dies (docs/resilience.md).
	# CUTOUT_GPU_WORKERS: gpu worker processes sharing the GPU (docs/gpu-pipeline.md), numbered
	# through PORT as honcho did (gpu0 metrics on :9101, gpu1 on :9111, …).
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" CUTOUT_ENV=$${CUTOUT_ENV:-development} \
	  $(PY) -m devtools.supervise -c gpu=$${CUTOUT_GPU_WORKERS:-1}

# Two processes, a test file each (module fixtures such as a stack are started once per file);
# most files wait on subprocesses and sockets, so two share a 2-core machine well.
TEST_PROCS ?= 2
test: weights browser promtool wasm
	$(PY) -m pytest -m "not gpu" -n $(TEST_PROCS) --dist loadfile $(PYTEST_ARGS)

# promtool checks and unit-tests compose/alerts.yml. Debian's prometheus package ships it; only
# the binary is extracted (nothing is installed). Without apt the tests skip it, except in CI.
promtool: $(VENV)/bin/promtool

$(VENV)/bin/promtool: | $(VENV)/.installed
	@tmp=$$(mktemp -d); \
	if command -v apt-get >/dev/null && (cd $$tmp && { apt-get download -qq prometheus \
	    || { apt-get update -qq && apt-get download -qq prometheus; }; }) >/dev/null 2>&1; then \
	  dpkg-deb -x $$tmp/prometheus_*.deb $$tmp/x && cp $$tmp/x/usr/bin/promtool $@; \
	else echo "promtool: could not fetch Debian's prometheus package; its tests will skip"; fi; \
	rm -rf $$tmp

lint: setup
	@# A merge's conflict markers left in any tracked file (docs and configs too) fail the lint.
	@! git grep -n -E '^(<<<<<<<|>>>>>>>)( |$$)' -- . || { echo "conflict markers above" >&2; exit 1; }
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# Calibrate INT8 and run the quality gate, so CUTOUT_ENGINE=auto can choose by measurement.
.PHONY: engines bench-engines
engines: weights
	$(PY) -m workers.calibrate
	$(PY) -m workers.engines.check

bench-engines: weights
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	$(PY) -m bench.engines

clean-venv:
	rm -rf $(VENV)
