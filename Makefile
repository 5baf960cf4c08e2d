# Two commands from a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HEAVY := slow services ray hardening
# The kserve SDK checks the KServe manifests in the tests. It pins pandas<3, so it goes in
# without its dependency pins, with the ones its models and import need.
KSERVE_SDK := "kserve>=0.14,<0.22"
KSERVE_SDK_DEPS := "fastapi<1" "cloudevents<2" "grpc-interceptor<1" "timing-asgi<1" "tabulate<1" \
	"psutil<6" python-dateutil six aiohttp pyjwt pyasn1 pillow python-multipart cryptography

.PHONY: demo demo-quick quickstart check test test-fast test-heavy bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/pip install --quiet --no-deps $(KSERVE_SDK)
	$(BIN)/pip install --quiet $(KSERVE_SDK_DEPS)
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
	$(BIN)/pytest -q --durations=15 -m "not slow and not services and not ray and not hardening"

# Modules that run in a pytest process of their own: tritonclient's protobuf messages (package
# inference) clash with the same messages another module loaded earlier in one process.
OWN_PROCESS := tests/services/test_grpc_serving.py

test-heavy: $(STAMP)
	@for marker in $(HEAVY); do \
		echo "== pytest -m $$marker"; \
		$(BIN)/pytest -q --durations=15 -m $$marker $(foreach m,$(OWN_PROCESS),--ignore=$(m)) \
			|| [ $$? -eq 5 ] || exit 1; \
	done
	@for module in $(OWN_PROCESS); do \
		echo "== pytest $$module"; \
		$(BIN)/pytest -q --durations=15 -m "slow or services or ray or hardening" $$module \
			|| [ $$? -eq 5 ] || exit 1; \
	done

bench: $(STAMP)
	$(BIN)/pip install --quiet -e ".[dev,bench]"
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
