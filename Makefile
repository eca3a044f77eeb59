# BookingBridge: every set-up step lives here, so a fresh clone needs only `make run` / `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-fast check bench demo deps browser clean

# Python environment: rebuilt when the requirements change.
$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

# Azurite (pinned in package-lock.json).
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch node_modules/.installed

deps: $(STAMP) node_modules/.installed

# Headless Chromium for the sign-in page tests (Debian's package; browsers cannot be downloaded here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "warning: could not install chromium; browser tests will be skipped"; \
	  else echo "warning: chromium missing and not root; browser tests will be skipped"; fi; }

## The whole product locally: Azurite, the Microsoft 365 and Key Vault emulators, the Functions host.
run: deps
	$(PY) -m devstack.run

## All tests (starts and stops its own stack pieces on free ports).
test: deps browser
	$(PY) -m pytest -q -p no:cacheprovider

## The unit tier only (no processes, no sockets): seconds, for the edit-test loop.
test-fast: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -m unit

## Lint, format check and types.
check: deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

## Benchmarks, each printing its figures.
bench: deps
	$(PY) -m bench

## Against a running `make run`: the whole story, step by step.
demo: deps
	$(PY) -m devstack.demo

clean:
	rm -rf .devstack test-artifacts
