# The one place set-up lives. Every target installs what it needs, idempotently; a second run is fast.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
WF := $(VENV)/bin/wasmfilter
STAMP := .make
PYTHON ?= python3
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Debian packages: the Rust wasm toolchain fallback (rustc-web + std sources + lld + wasi-libc, see
# docs/toolchain.md), wasm-opt, the load generator, and the OCI registry server the tests start;
# docker-compose (v1, when the `docker compose` plugin is absent) and libc6-dev (static echo upstream image);
# clang-22 (+ its wasm32 runtime) builds examples/c-filter against wasi-libc with lld-22 (docs/languages.md).
APT_PACKAGES := rustc-web cargo-web rust-web-src rust-web-clippy lld-22 wasi-libc binaryen wabt wrk \
	docker-registry docker-compose libc6-dev clang-22 libclang-rt-22-dev-wasm32

# Scenario files run on both Envoy backends in `make test` (docs/docker.md); override with WASMFILTER_BACKENDS=process.
# And on the emulator: every case's verdict must agree with Envoy's (docs/emulator.md).
WASMFILTER_BACKENDS ?= process,docker,emulator

.PHONY: help setup toolchain venv demo test test-rust test-python lint lint-python lint-rust bench clean images \
	compose-up compose-down

help:
	@echo "make demo   install everything, build the reference filters, run them in a real Envoy"
	@echo "make test   install everything, run the whole suite: lint first, then Rust unit tests and pytest"
	@echo "make lint   ruff, mypy (toolkit/), cargo clippy -D warnings (filters/)"
	@echo "make bench  the full benchmark (not part of make test)"
	@echo "make compose-up / compose-down   the reference filters in docker-compose on 127.0.0.1 (docs/docker.md)"

setup: toolchain venv

toolchain:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

venv: $(STAMP)/venv

$(STAMP)/venv: pyproject.toml
	@mkdir -p $(STAMP)
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@

demo: setup
	$(WF) demo

# Lint first: a red lint fails `make test` (and CI) before the long suite starts.
test: setup
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory test-rust
	$(MAKE) --no-print-directory test-python

lint: lint-python lint-rust

lint-python: setup
	$(VENV)/bin/ruff check toolkit tests benchmarks filters
	$(VENV)/bin/mypy

lint-rust: setup
	$(WF) unittest filters --clippy-only
	$(WF) unittest examples/callout --clippy-only

# The Cargo workspace at once: every filter's plain-Rust tests (clippy ran in lint).
test-rust: setup
	$(WF) unittest filters --no-clippy
	$(WF) unittest examples/callout --no-clippy

test-python: setup
	WASMFILTER_BACKENDS=$(WASMFILTER_BACKENDS) $(PY) -m pytest

bench: setup
	$(WF) bench --all

images: setup
	$(WF) image build

# Builds the filters and images first (the .wasm files must exist before compose mounts them).
compose-up: setup
	$(WF) compose up

compose-down: setup
	$(WF) compose down

clean:
	rm -rf $(STAMP) $(VENV) filters/target
