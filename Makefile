# One command each: `make run` starts the pipeline locally, `make test` runs every check.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stamp-$(shell cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-16)
MODEL := models/all-MiniLM-L6-v2-int8/model.onnx
# Azurite (npm, pinned in package-lock.json) for the Azure adapter tests; reinstalled only when the lock changes.
NODE_STAMP := node_modules/.stamp-$(shell cat package.json package-lock.json | sha256sum | cut -c1-16)

.PHONY: install model run test lint typecheck unit bench clean node azurite

$(STAMP): requirements.txt requirements-dev.txt
	@command -v $(PY) >/dev/null || { echo "Python 3.11 is required ($(PY) not found)"; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	rm -f $(VENV)/.stamp-* && touch $@

install: $(STAMP)

$(NODE_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || { echo "Node.js and npm are required (Azurite, for the Azure adapter tests)"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	rm -f node_modules/.stamp-* && touch $@

node: $(NODE_STAMP)

# Azurite on its default ports, for `INFERQ_BACKEND=azure AzureWebJobsStorage=UseDevelopmentStorage=true make run`
azurite: node
	node_modules/.bin/azurite --silent --inMemoryPersistence --disableTelemetry --skipApiVersionCheck --loose

$(MODEL): | $(STAMP)
	$(BIN)/python scripts/fetch_model.py

model: $(STAMP)
	$(BIN)/python scripts/fetch_model.py

run: install model
	$(BIN)/python -m functions.local

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest -q tests/unit

test: install model node lint typecheck
	$(BIN)/pytest -q

# One run, one table per workload (engine, peer server, host, Azure storage, cost); `--quick` for a smoke run.
bench: install model node
	$(BIN)/python scripts/bench.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
