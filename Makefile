# The two commands: `make demo` (the main job) and `make test` (everything CI checks).
# Both set up what they need on a fresh machine: a Rust toolchain and Python 3.11 are
# assumed, everything else (moto server, cfn-lint, cargo-lambda, SAM CLI) goes into .venv here.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
VENV_STAMP := $(VENV)/.installed-$(shell cksum requirements-dev.txt | cut -d' ' -f1)
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export MOTO_SERVER := $(CURDIR)/$(VENV)/bin/moto_server

.PHONY: demo test install lint lint-rust lint-template unit lambda-check sam-version sam-build report-check bench venv

# The dev profile: a fresh clone's first `make demo` compiles ~3x less than with
# optimisations (365 s of CPU against 1,140 s for [profile.cli]), the demo then runs in
# 2.5 s instead of 1.0 s, and `make test` reuses much of the build (docs/performance.md).
demo:
	cargo run --quiet -p streamwatch -- demo

# The Python tools install while clippy checks; then the template lint, the tests, the
# cargo-lambda check and the zips run side by side: the tests mostly wait (on moto, on
# real-time windows) while the zips compile, and lambda-check and report-check run the
# binaries the test build made. Each step prints when it started and ended, its wall and CPU
# time, and its output whole when it ends (--output-sync); a table of all steps comes last.
# CI's machines cannot build arm64 (see sam-build): `make test` builds x86_64;
# `make sam-build ARCH=arm64` where they can.
test:
	@rm -f target/ci-steps.tsv
	@$(MAKE) --no-print-directory -j2 --output-sync=target ci-venv ci-lint-rust
	@$(MAKE) --no-print-directory -j4 --output-sync=target ci-lint-template ci-unit ci-lambda-check ci-sam-build ARCH=x86_64
	@$(MAKE) --no-print-directory ci-report-check
	@tools/ci_step.sh --summary

ci-%:
	@tools/ci_step.sh $* $(MAKE) --no-print-directory $*

# `streamwatch` on PATH (~/.cargo/bin), so the README's commands run as written.
install:
	cargo install --locked --profile cli --path crates/cli

venv: $(VENV_STAMP)

$(VENV_STAMP): requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements-dev.txt
	rm -f $(VENV)/.installed-*
	touch $@

lint: lint-rust lint-template

lint-rust:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

lint-template: venv
	cfn-lint template.yaml
	mkdir -p target
	$(VENV)/bin/python tools/sam_translate.py template.yaml target/template.cfn.json
	cfn-lint target/template.cfn.json

# cargo-nextest runs every test in its own process, several at once across test binaries
# (.config/nextest.toml); `cargo test` runs the binaries one after another. Same tests.
unit:
	@if cargo nextest --version >/dev/null 2>&1; then \
	  echo "cargo nextest run --workspace --locked"; cargo nextest run --workspace --locked; \
	else \
	  echo "cargo-nextest not installed: cargo test (slower)"; cargo test --workspace --locked; \
	fi

# Each function (the test build's binary) on `cargo lambda watch`'s runtime emulator, invoked
# with its sample events against moto (tools/lambda_watch_check.sh).
lambda-check:
	tools/lambda_watch_check.sh

# The functions as `sam deploy` ships them: `sam validate --lint`, then `sam build` (the
# rust-cargolambda build method, each function's CodeUri in the workspace), then each
# artifact checked: an executable bootstrap for ARCH, a deployment zip under 4 MB.
# ARCH defaults to the template's arm64; CI passes x86_64 (the aarch64 standard library
# cannot be installed here). A workspace member as CodeUri needs SAM CLI >= 1.165
# (aws-lambda-builders >= 1.66); docs/deploy.md.
ARCH ?= arm64
SAM_MIN_VERSION := 1.165.0
SAM_BUILD_DIR := target/sam

sam-version:
	@v=$$(sam --version | awk '{print $$NF}'); \
	if [[ $$(printf '%s\n%s\n' "$(SAM_MIN_VERSION)" "$$v" | sort -V | head -n1) != "$(SAM_MIN_VERSION)" ]]; then \
	  echo "SAM CLI $$v is older than $(SAM_MIN_VERSION): sam build cannot copy a workspace member's binary (pip install 'aws-sam-cli>=$(SAM_MIN_VERSION)')" >&2; exit 1; \
	fi; echo "SAM CLI $$v (>= $(SAM_MIN_VERSION))"

# sam build runs `cargo lambda build --release` in each function's directory, one after the
# other, and each ends in a single-threaded fat-LTO link of ~2 CPU-minutes. The three share every
# dependency with the same features, so building them first in one cargo call runs those links
# side by side and sam build finds its units fresh (10 s); what it ships is the same.
FUNCTION_PACKAGES := -p metrics-publisher -p window-aggregator -p alerter

sam-build: venv sam-version
	SAM_CLI_TELEMETRY=0 sam validate --lint
	cargo lambda build --release --locked $(if $(filter arm64,$(ARCH)),--arm64) $(FUNCTION_PACKAGES)
	SAM_CLI_TELEMETRY=0 sam build --build-dir $(SAM_BUILD_DIR) --parameter-overrides Architecture=$(ARCH)
	$(VENV)/bin/python tools/check_lambda_artifacts.py $(SAM_BUILD_DIR) $(ARCH) 4

# The demo's HTML report rendered in headless Chromium (installed from Debian if missing).
report-check:
	tools/report_render_check.sh

# Every bench/*.sh (decode, lambda init/warm/memory, soak), then one table with the ratios.
bench:
	bench/all.sh
