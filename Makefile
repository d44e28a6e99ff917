# Tidemark. `make demo` runs the pipeline on the embedded stack; `make test` runs the tests.
# Every target that needs the environment depends on `setup`, so a fresh clone needs nothing else.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
TM    := $(VENV)/bin/tidemark
export SPARK_LOCAL_IP ?= 127.0.0.1

.PHONY: setup up down status demo lint test test-unit test-integration bench lock clean

setup:
	@bash scripts/setup.sh

up: setup
	@$(TM) stack up

down:
	@if [ -x $(TM) ]; then $(TM) stack down; else echo "nothing to stop (no venv)"; fi

status: setup
	@$(TM) stack status

demo: setup
	@bash scripts/demo.sh

# Lint and types (config in pyproject.toml): ruff on all the Python in the repo, mypy on the package.
# `make test` (and so CI) runs it first; fix with `$(VENV)/bin/ruff check --fix` and `$(VENV)/bin/ruff format`.
RUFF_PATHS := tidemark dags jobs tests bench
lint: setup
	@$(VENV)/bin/ruff check $(RUFF_PATHS)
	@$(VENV)/bin/ruff format --check $(RUFF_PATHS)
	@$(VENV)/bin/mypy

test: setup lint
	@$(PY) -m pytest tests

test-unit: setup
	@$(PY) -m pytest -m unit

test-integration: setup
	@$(PY) -m pytest -m integration

bench: setup
	@$(PY) bench/generator_throughput.py

# Regenerate the full transitive lock from the current venv after changing requirements.txt.
lock:
	@$(VENV)/bin/pip freeze --exclude-editable | grep -vi '^tidemark' > constraints.txt

# Removes the demo stack's state only (tests and benches keep theirs under .tidemark/test, .tidemark/bench).
clean: down
	cd .tidemark 2>/dev/null && find . -mindepth 1 -maxdepth 1 ! -name test ! -name bench -exec rm -rf {} + || true
