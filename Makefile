# Developer commands. A fresh clone needs only python3 (≥ 3.11) and the Redis/PostgreSQL programs:
# uv is installed with pip when missing, and `pm dev ensure` finds or starts the servers.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
# One shell per recipe, so variables sourced from the env file reach the commands after it. Make would
# echo such a recipe whole before running it, so recipes are silent (@) and trace themselves (set -x).
.ONESHELL:
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules --no-print-directory

PYTHON ?= python3
PYTEST_ARGS ?=
BENCH_ARGS ?=
UP_ARGS ?=
ENV_FILE := $(or $(PM_HOME),.pm)/env
# uv must never fetch an interpreter: the only network a target may use is the package registry.
export UV_PYTHON_DOWNLOADS ?= never

# uv on PATH, else in ~/.local/bin, else the copy pip installs, run as a module (pip may put its
# script in a bin directory that is not on PATH).
UV := $(shell command -v uv 2>/dev/null || { test -x "$$HOME/.local/bin/uv" && echo "$$HOME/.local/bin/uv"; } || echo "$(PYTHON) -m uv")
# The environment is synced (and checked against uv.lock) once per target; `uv run` must not re-lock.
RUN := $(UV) run --no-sync
# Every member's sources and tests; test folders by file, as each member has one named tests/. A
# conftest.py in a folder whose name is no package name (services/adapter-ipps/tests) is a top-level
# module `conftest` to mypy, so two of them cannot be checked in one run: each gets a run of its own.
MYPY_CONFTESTS = $(wildcard services/*-*/tests/conftest.py)
MYPY_PATHS = shared/src services/*/src sandboxes/*/src tools/src clients/python/src tests \
  $(filter-out $(MYPY_CONFTESTS),$(wildcard shared/tests/*.py shared/tests/*/*.py services/*/tests/*.py \
    sandboxes/*/tests/*.py tools/tests/*.py clients/python/tests/*.py))

.PHONY: help uv sync env up test bench chaos lint fmt clean

help: ## List the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-6s %s\n", $$1, $$2}'

uv: ## Make sure uv is available, installing it with pip when missing
	@if ! $(UV) --version >/dev/null 2>&1; then
	  echo "uv not found; installing it with pip" >&2
	  # --user is refused inside a virtualenv; Debian's own python3 (PEP 668) refuses both plain forms.
	  $(PYTHON) -m pip install --user uv \
	    || $(PYTHON) -m pip install uv \
	    || $(PYTHON) -m pip install --user --break-system-packages uv
	fi
	$(UV) --version

sync: uv ## Install the workspace exactly as uv.lock pins it
	$(UV) sync --all-packages --locked

env: sync ## Find or start Redis and PostgreSQL; write their URLs to .pm/env
	$(RUN) pm dev ensure --env-file "$(ENV_FILE)"

up: sync ## Run the whole fleet in the foreground (Ctrl-C stops it); UP_ARGS="--only gateway"
	exec $(RUN) pm up $(UP_ARGS)

test: env ## Lint, type-check and run every test against real Redis and PostgreSQL; PYTEST_ARGS="-x"
	@set -a; source "$(ENV_FILE)"; set +a
	set -x
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy $(MYPY_PATHS)
	for conftest in $(MYPY_CONFTESTS); do $(RUN) mypy "$$conftest"; done
	$(RUN) python tests/check_dependencies.py
	$(RUN) pytest $(PYTEST_ARGS)

bench: env ## Run the benchmark against real Redis and PostgreSQL; BENCH_ARGS=...
	@set -a; source "$(ENV_FILE)"; set +a
	set -x
	$(RUN) pm bench $(BENCH_ARGS)

chaos: sync ## Chaos runs on private Redis/PostgreSQL, three seeds in a row (a few minutes)
	@set -x
	$(RUN) pm chaos --seed 1 --intents 1000 --kills 9 --rate 20
	$(RUN) pm chaos --seed 2 --intents 1000 --kills 9 --rate 20
	$(RUN) pm chaos --seed 3 --intents 1000 --kills 9 --rate 20

lint: sync ## ruff check, ruff format --check, mypy, the dependency check
	@set -x
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy $(MYPY_PATHS)
	for conftest in $(MYPY_CONFTESTS); do $(RUN) mypy "$$conftest"; done
	$(RUN) python tests/check_dependencies.py

fmt: sync ## Format and auto-fix with ruff
	@set -x
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

clean: ## Stop the private Redis/PostgreSQL, delete .pm (their data) and tool caches
	@set -x
	if [ -x .venv/bin/pm ]; then .venv/bin/pm dev stop; fi
	rm -rf "$(or $(PM_HOME),.pm)" .mypy_cache .ruff_cache .pytest_cache
	find . -path ./.venv -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
