# Two commands from a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HEAVY := slow services ray hardening

.PHONY: demo demo-quick quickstart check test test-fast test-heavy bench clean

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

# The code base holds its own rules: style and lint, types, the layers between stages.
check: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

# check, the default suite, then each heavy marker in its own invocation (exit 5: none selected).
test: check test-fast test-heavy

test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow and not services and not ray and not hardening"

test-heavy: $(STAMP)
	@for marker in $(HEAVY); do \
		echo "== pytest -m $$marker"; \
		$(BIN)/pytest -q -m $$marker || [ $$? -eq 5 ] || exit 1; \
	done

bench: $(STAMP)
	$(BIN)/pip install --quiet -e ".[dev,bench]"
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
