# Two commands from a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo demo-quick quickstart test test-fast test-slow bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/flywheel demo

demo-quick: $(STAMP)
	$(BIN)/flywheel demo --quick

quickstart: $(STAMP)
	bash examples/churn/quickstart.sh

test: $(STAMP)
	$(BIN)/pytest -q -m "not slow"
	$(BIN)/pytest -q -m slow || [ $$? -eq 5 ]

test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

bench: $(STAMP)
	$(BIN)/pip install --quiet -e ".[dev,bench]"
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache
