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

.PHONY: demo test install lint unit lambda-check sam-version sam-build report-check bench venv

demo:
	cargo run --quiet --profile cli -p streamwatch -- demo

# After lint, the tests, the cargo-lambda check and the zips run side by side: the tests
# mostly wait (on moto, on real-time windows) while the other two compile. Each step's
# output is printed whole when it ends (--output-sync). CI's machines cannot build arm64
# (see sam-build): `make test` builds x86_64; `make sam-build ARCH=arm64` where they can.
test: venv lint
	@echo "== unit, lambda-check and sam-build run side by side; each prints its output when it ends"
	@$(MAKE) --no-print-directory -j3 --output-sync=target unit lambda-check sam-build ARCH=x86_64
	@$(MAKE) --no-print-directory report-check

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

lint:
	@echo "== make lint started $$(date -u +%T)"
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	cfn-lint template.yaml
	mkdir -p target
	$(VENV)/bin/python tools/sam_translate.py template.yaml target/template.cfn.json
	cfn-lint target/template.cfn.json

# cargo-nextest runs every test in its own process, several at once across test binaries
# (.config/nextest.toml); `cargo test` runs the binaries one after another. Same tests.
unit:
	@echo "== make unit started $$(date -u +%T)"
	@if cargo nextest --version >/dev/null 2>&1; then \
	  echo "cargo nextest run --workspace --locked"; cargo nextest run --workspace --locked; \
	else \
	  echo "cargo-nextest not installed: cargo test (slower)"; cargo test --workspace --locked; \
	fi
	@echo "== make unit ended $$(date -u +%T)"

# Each function under `cargo lambda watch`, invoked with its sample events against moto.
lambda-check:
	@echo "== make lambda-check started $$(date -u +%T)"
	tools/lambda_watch_check.sh
	@echo "== make lambda-check ended $$(date -u +%T)"

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

sam-build: venv sam-version
	@echo "== make sam-build started $$(date -u +%T)"
	SAM_CLI_TELEMETRY=0 sam validate --lint
	SAM_CLI_TELEMETRY=0 sam build --build-dir $(SAM_BUILD_DIR) --parameter-overrides Architecture=$(ARCH)
	$(VENV)/bin/python tools/check_lambda_artifacts.py $(SAM_BUILD_DIR) $(ARCH) 4
	@echo "== make sam-build ended $$(date -u +%T)"

# The demo's HTML report rendered in headless Chromium (installed from Debian if missing).
report-check:
	@echo "== make report-check started $$(date -u +%T)"
	tools/report_render_check.sh

# Every bench/*.sh (decode, lambda init/warm/memory, soak), then one table with the ratios.
bench:
	bench/all.sh
