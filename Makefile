# Two entry points: `make serve` runs the service on the embedded voice, `make test` runs the tests.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

# Serving the embedded voice needs the core dependencies only (no torch).
$(BIN)/.serve: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $@

# The tests also run the neural voice on CPU and the real clients (torch, openai, ...).
$(BIN)/.installed: $(BIN)/.serve
	$(BIN)/pip install -q -e '.[test]'
	# Test-only oracle for the BiCodec compatibility test, without its dependency tree.
	$(BIN)/pip install -q --no-deps 'spark-tts-lib==0.2.1'
	touch $@

# The auth, rate-limit and storage tests start their own throwaway PostgreSQL and Redis servers
# from these binaries (tests/support/services.py); they fail, not skip, when one is missing.
.PHONY: serve test bench services
services:
	@if ! command -v redis-server >/dev/null || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  apt-get update -q && \
	  { command -v redis-server >/dev/null || apt-get install -y -q redis-server; } && \
	  { ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || apt-get install -y -q postgresql; }; \
	fi
	@command -v chromium >/dev/null || { apt-get update -q && apt-get install -y -q chromium; }

serve: $(BIN)/.serve
	$(BIN)/veena serve $(ARGS)

test: services $(BIN)/.installed
	$(BIN)/pytest -q $(ARGS)

bench: $(BIN)/.installed
	for f in tests/performance/bench_*.py; do $(BIN)/python $$f || exit 1; done
