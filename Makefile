# The telemetry lake: common tasks. `make` alone lists them.
.DEFAULT_GOAL := help
SHELL := /bin/bash

VENV := .venv
PY := $(VENV)/bin/python

ARCH ?= x86_64
# sam validate and sam build run offline here; they still want a region.
SAM := AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1} SAM_CLI_TELEMETRY=0 .venv-deploy/bin/sam

.PHONY: help setup deploy-tools demo test test-rust lint-template check fmt bench package sam-build diagrams clean

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-14s %s\n", $$1, $$2}'

setup: ## Create .venv with the pinned Python tools (moto server, cfn-lint); idempotent
	@scripts/bootstrap.sh

deploy-tools: ## Create .venv-deploy with the pinned deploy tools (aws-sam-cli, cargo-lambda, ziglang); idempotent
	@scripts/bootstrap.sh .venv-deploy scripts/requirements-deploy.txt

demo: setup ## Run the whole suite locally on moto (make demo ARGS="--devices 10 --json")
	cargo run --quiet --bin local-run -- $(ARGS)

test: setup lint-template test-rust ## Run every test (unit, integration on moto, template lint)

test-rust:
	cargo test --workspace --no-fail-fast

lint-template: setup deploy-tools ## Lint template.yaml: cfn-lint, then sam validate --lint (no suppressed warnings)
	$(VENV)/bin/cfn-lint template.yaml
	$(SAM) validate --lint --template template.yaml

check: ## Formatting and clippy, warnings as errors (never rewrites files)
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt: ## Format the code
	cargo fmt --all

# The CPU the benchmarks are pinned to.
BENCH_CPU ?= 1
# The function crates, built on their own for the size and cold-start figures:
# with the tools in the same build, cargo would unify the tools' extra SDK
# features (SSO, credential_process) into the functions, as a deploy does not.
FUNCTIONS := $(notdir $(wildcard functions/*))

bench: setup ## Benchmarks on one core; rewrites the figures in BENCHMARKS.md
	cargo build --release $(addprefix -p ,$(FUNCTIONS))
	# Built on every core first: only the runs are pinned.
	cargo bench --workspace --bench report --bench stream_functions --bench iceberg_commits --bench cost --no-run
	taskset -c $(BENCH_CPU) cargo bench --workspace --bench report -- --out $(CURDIR)/BENCHMARKS.md
	taskset -c $(BENCH_CPU) cargo bench --workspace --bench stream_functions
	# What a billion records cost, from the requests each function makes on moto.
	cargo bench --workspace --bench cost -- --out $(CURDIR)/BENCHMARKS.md
	# Iceberg commits on moto (moto pinned with it).
	taskset -c $(BENCH_CPU) cargo bench --workspace --bench iceberg_commits -- --out $(CURDIR)/BENCHMARKS.md

package: ## Build every function's Lambda zip (out/lambda/*/bootstrap.zip), check glibc <= 2.34; ARCH=arm64 needs the aarch64 target
	ARCH=$(ARCH) nice -n 10 scripts/package.sh

sam-build: deploy-tools ## sam build --beta-features (.aws-sam/build), compared with make package's bootstraps
	ARCH=$(ARCH) nice -n 10 scripts/sam-build.sh

diagrams: ## Regenerate the state machine diagrams in docs/operations.md and statemachine/README.md from the ASL
	cargo run --quiet --bin asl-mermaid -- --update docs/operations.md statemachine/README.md

clean: ## Remove build outputs and the virtualenvs
	cargo clean
	rm -rf $(VENV) .venv-deploy out .aws-sam
