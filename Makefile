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

demo: setup ## Run the main job locally on moto: telemetry -> Kinesis -> kinesis-to-parquet -> S3 lake
	cargo run --quiet -p lake-tools --bin local-run -- $(ARGS)

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

# The CPU the benchmarks are pinned to.
BENCH_CPU ?= 1

bench: ## Benchmarks on one core; rewrites the figures in BENCHMARKS.md
	cargo build --release --workspace --bins
	taskset -c $(BENCH_CPU) cargo bench --workspace --bench report -- --out BENCHMARKS.md
	taskset -c $(BENCH_CPU) cargo bench --workspace --bench stream_functions

clean: ## Remove build outputs and the virtualenv
	cargo clean
	rm -rf $(VENV)
