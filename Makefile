# LUC: `make run` starts the service on an embedded PostgreSQL; `make test` runs everything.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# LUC alone (what `make run` needs), then the development tools on top (tests, linters).
RUNTIME := $(VENV)/.installed-runtime
INSTALLED := $(VENV)/.installed

$(RUNTIME): pyproject.toml setup.py
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "LUC needs Python 3.11 or newer"'
	@echo "Installing LUC into $(VENV) (the first time takes about a minute)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(RUNTIME)

$(INSTALLED): $(RUNTIME)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(INSTALLED)

.PHONY: help install run test lint format typecheck bench clean

help: ## List the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: $(INSTALLED) ## Create .venv and install LUC with its development tools (make run needs none)

run: $(RUNTIME) ## Start LUC on 127.0.0.1:8000 (embedded PostgreSQL unless LUC_DATABASE_URL is set)
	@echo "LUC needs an API key on most routes. The first admin key, in another shell:"
	@echo "    $(BIN)/luc keys create --scope admin --name me"
	$(BIN)/luc serve

test: $(INSTALLED) lint typecheck ## Lint, type-check, check the import layers, run the whole test suite on real PostgreSQL
	$(BIN)/lint-imports
	$(BIN)/pytest -q

lint: $(INSTALLED) ## ruff lint and format check
	$(BIN)/ruff check service tests bench db grafana
	$(BIN)/ruff format --check service tests bench db grafana

format: $(INSTALLED) ## Apply ruff's formatting and safe fixes
	$(BIN)/ruff format service tests bench db grafana
	$(BIN)/ruff check --fix service tests bench db grafana

typecheck: $(INSTALLED) ## mypy: --strict on service/, db/, grafana/; tests/ and bench/ checked too
	$(BIN)/mypy

bench: $(INSTALLED) ## Ingest vs COPY, ingest paths, reads at 10k and 10M rows, /metrics, the proxy (long)
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.ingest_paths
	$(BIN)/python -m bench.reads --ledger-rows 10000000
	$(BIN)/python -m bench.metrics
	$(BIN)/python -m bench.proxy

clean: ## Remove .venv and caches (not your data)
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .import_linter_cache
