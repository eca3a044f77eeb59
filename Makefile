# BookingBridge: every set-up step lives here, so a fresh clone needs only `make run` / `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-fast check bench demo deps browser console clean

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

# The admin console (console/: TypeScript, Vite; pinned in console/package-lock.json), built into
# console/dist/, which the Functions app serves at /api/console/.
CONSOLE_STAMP := console/node_modules/.installed
CONSOLE_SOURCES := $(shell find console/src -type f 2>/dev/null) console/index.html \
	console/vite.config.ts console/tsconfig.json
$(CONSOLE_STAMP): console/package.json console/package-lock.json
	cd console && npm ci --no-audit --no-fund --loglevel=error
	touch $(CONSOLE_STAMP)

console/dist/index.html: $(CONSOLE_STAMP) $(CONSOLE_SOURCES)
	cd console && npm run --silent build

## The admin console's bundle (console/dist/).
console: console/dist/index.html

# Headless Chromium for the sign-in page tests (Debian's package; browsers cannot be downloaded here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "warning: could not install chromium; browser tests will be skipped"; \
	  else echo "warning: chromium missing and not root; browser tests will be skipped"; fi; }

## The whole product locally: Azurite, the Microsoft 365 and Key Vault emulators, the Functions host.
run: deps console
	$(PY) -m devstack.run

## All tests (starts and stops its own stack pieces on free ports).
test: deps browser console
	cd console && npm test --silent
	$(PY) -m pytest -q -p no:cacheprovider

## The unit tier only (no processes, no sockets): seconds, for the edit-test loop.
test-fast: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -m unit

## Lint, format check and types.
check: deps $(CONSOLE_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	cd console && npm run --silent lint

## Benchmarks, each printing its figures.
bench: deps
	$(PY) -m bench

## Against a running `make run`: the whole story, step by step.
demo: deps
	$(PY) -m devstack.demo

clean:
	rm -rf .devstack test-artifacts
