# The two commands: `make demo` (the main job) and `make test` (everything CI checks).
# Both set up what they need on a fresh machine: a Rust toolchain and Python 3.11 are
# assumed, everything else (moto server, cfn-lint, cargo-lambda) goes into .venv here.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
VENV_STAMP := $(VENV)/.installed-$(shell cksum requirements-dev.txt | cut -d' ' -f1)
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export MOTO_SERVER := $(CURDIR)/$(VENV)/bin/moto_server

.PHONY: demo test install lint unit lambda-check lambda-build report-check bench venv

demo:
	cargo run --quiet --release -p streamwatch -- demo

test: venv lint unit lambda-check lambda-build report-check

# `streamwatch` on PATH (~/.cargo/bin), so the README's commands run as written.
install:
	cargo install --locked --path crates/cli

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

unit:
	@echo "== make unit started $$(date -u +%T)"
	cargo test --workspace --locked

# Each function under `cargo lambda watch`, invoked with its sample events against moto.
lambda-check:
	@echo "== make lambda-check started $$(date -u +%T)"
	tools/lambda_watch_check.sh

# Release zips as Lambda runs them (see README "Lambda builds" for why x86-64 here).
lambda-build:
	@echo "== make lambda-build started $$(date -u +%T)"
	cargo lambda build --release --x86-64 --output-format zip --package metrics-publisher --package window-aggregator --package alerter
	@for f in target/lambda/*/bootstrap.zip; do printf '%-40s %8.2f MB zipped\n' "$$f" "$$(stat -c %s "$$f" | awk '{print $$1/1048576}')"; done

# The demo's HTML report rendered in headless Chromium (installed from Debian if missing).
report-check:
	@echo "== make report-check started $$(date -u +%T)"
	tools/report_render_check.sh

# Every bench/*.sh (decode, lambda init/warm/memory, soak), then one table with the ratios.
bench:
	bench/all.sh
