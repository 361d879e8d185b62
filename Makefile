# The two commands the README opens with: `make run` and `make test`. Both are idempotent and
# install what they need (virtualenv, packages, model weights, a Redis if none answers).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export CUTOUT_REDIS_URL ?= redis://127.0.0.1:6379/0
export CUTOUT_MODEL_DIR ?= $(HOME)/.cache/cutout

.PHONY: setup weights run test lint clean-venv

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

run: weights
	$(PY) -m storage.redis_server ensure "$(CUTOUT_REDIS_URL)"
	@echo ""
	@echo "  cutout is starting: API http://127.0.0.1:8000  Flower http://127.0.0.1:5555"
	@echo "  send a photo:  curl -F image=@photo.jpg http://127.0.0.1:8000/api/v2/jobs"
	@echo "  then poll the Location it answers:  curl http://127.0.0.1:8000/api/v2/jobs/<id>"
	@echo ""
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/honcho start -f Procfile

test: weights
	$(PY) -m pytest -m "not gpu" $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

clean-venv:
	rm -rf $(VENV)
