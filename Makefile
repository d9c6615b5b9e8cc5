# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo test test-fast test-docker lint install services clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# -qq: errors still show; setuptools' notice that every editable install prints ("Editable
# installation ... folders with the same name") is not a warning about this project.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -qq -e .
	touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -qq -e '.[test]'
	touch $@ $(STAMP)

install: $(STAMP)

# The main job on the embedded default: Ray on this machine, MLflow in sqlite:///mlflow.db,
# the real `digits` images (no download).
demo: $(STAMP)
	$(BIN)/python -m sweeper.demo

# System services the cluster tests start for themselves (PostgreSQL's server binaries);
# installs them with apt only when missing.
services:
	@.ci/setup_services.sh

# Lint (ruff, rules in pyproject.toml) first: it takes a second and fails before the long suite.
lint: $(TEST_STAMP)
	$(BIN)/ruff check .

# The suite runs on two pytest-xdist workers (--dist loadgroup keeps the tests that share a
# fixture beyond one test on one worker, the longest first; tests/conftest.py), then the `serial`
# tests, timed against another driver or a clock, one at a time with nothing beside them.
# `make test TEST_WORKERS=0`: all in one process.
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -q --dist loadgroup

test: lint services
	$(PYTEST) -n $(TEST_WORKERS) -m "not serial" --durations=10
	$(PYTEST) -n 0 -m "serial" --durations=10

# Everything but the slow end-to-end and cluster tests, for quick local iteration.
test-fast: lint
	$(PYTEST) -n $(TEST_WORKERS) -m "not slow and not cluster"

# The image and the compose stack built and run for real (root on Debian/Ubuntu; installs and
# starts Docker itself; see docker/test/run.sh). Not part of `make test`: see docs/cluster.md,
# "What `make test-docker` runs".
test-docker: $(TEST_STAMP)
	PYTHON=$(abspath $(BIN)/python) docker/test/run.sh

clean:
	rm -rf $(VENV) mlflow.db mlruns mlartifacts sweeper_results reports
