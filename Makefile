# riskstream developer entry points. `make help` lists them.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PACKAGES := worker schemas inference
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install toolchain lint typecheck test test-quick test-reliability demo bench broker-start broker-stop clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed ## Create .venv and install riskstream with its dev tools

toolchain: ## Make sure Java 17+ and Maven (for the local Kafka broker) are installed
	@ops/ensure-toolchain.sh

lint: install ## ruff (bugbear, bandit rules); hadolint, kustomize + kubeconform, dashboard checks (ops/lint.sh)
	$(VENV)/bin/ruff check $(PACKAGES) tests ops/kafka ops/lint benchmarks
	$(VENV)/bin/ruff format --check $(PACKAGES) tests ops/kafka ops/lint benchmarks
	bash ops/lint.sh

typecheck: install ## mypy, strict on our packages
	$(VENV)/bin/mypy

test: lint typecheck toolchain ## Everything: lint, types, unit, integration and reliability tests (real broker)
	$(PY) -m pytest $(PYTEST_ARGS)

test-quick: install ## Unit tests only: no broker, no slow tests (a few minutes)
	$(PY) -m pytest -m "not integration and not slow" $(PYTEST_ARGS)

test-reliability: install toolchain ## Only the fault-injection scenarios
	$(PY) -m pytest -m reliability $(PYTEST_ARGS)

demo: install toolchain ## See it work: broker, model training, a synthetic stream, live scores
	$(VENV)/bin/riskstream demo

bench: install toolchain ## Benchmark riskstream against the alternatives (writes bench-out/)
	$(VENV)/bin/riskstream bench --out bench-out

broker-start: install toolchain ## Start the local Kafka broker (127.0.0.1:9092)
	$(PY) ops/kafka/kafka_local.py start

broker-stop: ## Stop the local Kafka broker
	$(PY) ops/kafka/kafka_local.py stop

clean: ## Remove the virtualenv and caches (not the cached broker jars or models)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
