# The two commands the README opens with: `make run` and `make test`. Both are idempotent and
# install what they need (virtualenv, packages, model weights, a Redis if none answers).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export CUTOUT_REDIS_URL ?= redis://127.0.0.1:6379/0
export CUTOUT_MODEL_DIR ?= $(HOME)/.cache/cutout

.PHONY: setup weights run test lint clean-venv promtool

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	# celery-batches 0.11 pins celery<5.7 but works with 5.7.0 (see pyproject.toml).
	$(PY) -m pip install --quiet --no-deps celery-batches==0.11
	touch $@

setup: $(VENV)/.installed

weights: setup
	$(PY) -m workers.models fetch

run: weights
	$(PY) -m storage.redis_server ensure "$(CUTOUT_REDIS_URL)"
	@echo ""
	@echo "  cutout is starting: API http://127.0.0.1:8000  Flower http://127.0.0.1:5555"
	@echo "  Flower's login is made up for this run and printed below (FLOWER_BASIC_AUTH sets one)"
	@echo "  metrics: http://127.0.0.1:8000/metrics, workers :9101 (gpu) and :9102 (io)"
	@echo "  send a photo:  curl -F image=@photo.jpg http://127.0.0.1:8000/api/v2/jobs"
	@echo "  then poll the Location it answers:  curl http://127.0.0.1:8000/api/v2/jobs/<id>"
	@echo ""
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" CUTOUT_ENV=$${CUTOUT_ENV:-development} \
	  $(VENV)/bin/honcho start -f Procfile

test: weights promtool
	$(PY) -m pytest -m "not gpu" $(PYTEST_ARGS)

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
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

clean-venv:
	rm -rf $(VENV)
