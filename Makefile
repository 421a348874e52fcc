# Two entry points: `make serve` runs the service on the embedded voice, `make test` runs the tests.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

$(BIN)/.installed: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	# Test-only oracle for the BiCodec compatibility test, without its dependency tree.
	$(BIN)/pip install -q --no-deps 'spark-tts-lib==0.2.1'
	touch $@

.PHONY: serve test bench
serve: $(BIN)/.installed
	$(BIN)/veena serve $(ARGS)

test: $(BIN)/.installed
	$(BIN)/pytest -q $(ARGS)

bench: $(BIN)/.installed
	for f in tests/performance/bench_*.py; do $(BIN)/python $$f || exit 1; done
