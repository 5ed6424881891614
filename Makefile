# Two commands: `make run` starts the whole stack, `make test` runs every test.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test install services lint chaos bench clean

run: install services
	@bash scripts/run.sh

# Two test processes (pytest-xdist), each with its own Redis and PostgreSQL; a module's tests stay in one
# process so its real workers and sandbox start once. PYTEST_JOBS=0 runs everything in this process.
PYTEST_JOBS ?= 2
test: install services
	$(PY) -m pytest -n $(PYTEST_JOBS) --dist loadfile $(PYTEST_ARGS)

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

# System servers the stack and the suite start (redis-server, PostgreSQL for tests, Chromium for the browser test).
services:
	@bash scripts/ensure-system-packages.sh

lint: install
	$(VENV)/bin/ruff check .

chaos: install services
	$(PY) -m bench.chaos $(CHAOS_ARGS)

clean:
	rm -rf test-output .pytest_cache
