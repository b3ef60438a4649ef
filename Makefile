# The telemetry lake: common tasks. `make` alone lists them.
.DEFAULT_GOAL := help
SHELL := /bin/bash

VENV := .venv
PY := $(VENV)/bin/python

.PHONY: help setup demo test test-rust lint-template check fmt bench clean

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-14s %s\n", $$1, $$2}'

setup: ## Create .venv with the pinned Python tools (moto server, cfn-lint); idempotent
	@scripts/bootstrap.sh

demo: setup ## Run the whole suite locally on moto (make demo ARGS="--devices 10 --json")
	cargo run --quiet --bin local-run -- $(ARGS)

test: setup lint-template test-rust ## Run every test (unit, integration on moto, template lint)

test-rust:
	cargo test --workspace --no-fail-fast

lint-template: setup ## Lint template.yaml with cfn-lint
	$(VENV)/bin/cfn-lint template.yaml

check: ## Formatting and clippy, warnings as errors (never rewrites files)
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt: ## Format the code
	cargo fmt --all

bench: ## Throughput of kinesis-to-parquet and device-status on a 10,000-record event
	cargo bench -p lake-tools --bench stream_to_lake
	cargo bench -p lake-tools --bench device_status

clean: ## Remove build outputs and the virtualenv
	cargo clean
	rm -rf $(VENV)
