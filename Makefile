# shipyard: `make plan STACK=staging` and `make test` work on a fresh machine; both set up first.
STACK ?= staging
UV_VERSION := 0.13.8
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := $(shell $(PYTHON) -m site --user-base)/bin/uv
endif
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup plan test bench lint docs

# Idempotent: installs uv if it is missing, then makes .venv match uv.lock exactly.
setup:
	@test -x "$(UV)" || $(PYTHON) -m pip install --quiet --user "uv==$(UV_VERSION)"
	@"$(UV)" sync --frozen --compile-bytecode --quiet

plan: setup
	@$(BIN)/shipyard plan --stack $(STACK)

# Tests run in a new random order each time (pytest-randomly), so none can lean on another;
# `make test SEED=…` repeats an order.
ifeq ($(origin SEED), undefined)
SEED := $(shell $(PYTHON) -c 'import random; print(random.randrange(2**32))')
endif
test: setup
	@echo "test order: make test SEED=$(SEED)"
	@$(BIN)/pytest -n auto -p randomly --randomly-seed=$(SEED)

bench: setup
	@$(BIN)/python scripts/bench.py

lint: setup
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .
	@$(BIN)/mypy

docs: setup
	@$(BIN)/python scripts/update_readme.py
	@$(BIN)/python scripts/update_ci_template.py
