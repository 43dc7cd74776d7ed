# shipyard: `make plan STACK=staging` and `make test` work on a fresh machine; both set up first.
# Needs only the distribution's Python (3.11-3.13) and make: see scripts/setup_env.py.
.DEFAULT_GOAL := help
STACK ?= staging
# Empty: setup takes the first supported python3, python3.13, python3.12 or python3.11 on PATH.
PYTHON ?=
VENV := .venv
BIN := $(VENV)/bin

.PHONY: help setup plan test bench lint docs

help: ## this list
	@echo "make TARGET [STACK=staging|prod] [PYTHON=python3.12] [SEED=N]"
	@sed -n 's/^\([a-z][a-z-]*\):.*## \(.*\)/  \1\t\2/p' $(MAKEFILE_LIST) | expand -t 10

setup: ## .venv exactly from uv.lock, with a pinned uv in .tools/ (first run downloads; later runs are quiet)
	@command -v python3 >/dev/null || { echo "setup: no python3 on PATH; install the distribution's python3 (3.11-3.13)" >&2; exit 2; }
	@python3 scripts/setup_env.py $(if $(PYTHON),--python "$(PYTHON)")

plan: setup ## the offline plan of STACK (no credentials, no network, no Pulumi CLI)
	@$(BIN)/shipyard plan --stack $(STACK)

# Tests run in a new random order each time (pytest-randomly), so none can lean on another;
# `make test SEED=…` repeats an order.
ifeq ($(origin SEED), undefined)
SEED := $(shell od -An -N4 -tu4 /dev/urandom | tr -d ' ')
endif
test: setup ## every test, one worker per core, in a random order (SEED=N repeats one)
	@echo "test order: make test SEED=$(SEED)"
	@$(BIN)/pytest -n auto -p randomly --randomly-seed=$(SEED)

bench: setup ## offline-plan time per stack against the SDK import floor, and the suite's wall time
	@$(BIN)/python scripts/bench.py

lint: setup ## ruff (lint and format check) and mypy
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .
	@$(BIN)/mypy

docs: setup ## regenerate the README's settings reference and the release script in the CI template
	@$(BIN)/python scripts/update_readme.py
	@$(BIN)/python scripts/update_ci_template.py
