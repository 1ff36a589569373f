# Quick start: `make ask` answers a sample question; `make test` runs ruff and the whole test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
BASE_STAMP := $(VENV)/.spanqa-base
TEST_STAMP := $(VENV)/.spanqa-test

.PHONY: ask test test-deps lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(BASE_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@ $(BASE_STAMP)

ask: $(BASE_STAMP)
	$(BIN)/spanqa ask --context-file samples/lighthouse.txt --top-k 3 "When was the lighthouse first lit?"

lint: $(TEST_STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

# Debian's chromium (and its emoji font) for tests/test_web.py: installed when missing, else one line to run.
test-deps:
	.ci/install-test-deps

test: test-deps lint
	$(BIN)/python -m pytest

format: $(TEST_STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build dist src/*.egg-info
