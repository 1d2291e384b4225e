# One command each: `make run` starts the pipeline locally, `make test` runs every check.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stamp-$(shell cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-16)
MODEL := models/all-MiniLM-L6-v2-int8/model.onnx

.PHONY: install model run test lint typecheck unit bench clean

$(STAMP): requirements.txt requirements-dev.txt
	@command -v $(PY) >/dev/null || { echo "Python 3.11 is required ($(PY) not found)"; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	rm -f $(VENV)/.stamp-* && touch $@

install: $(STAMP)

$(MODEL): | $(STAMP)
	$(BIN)/python scripts/fetch_model.py

model: $(STAMP)
	$(BIN)/python scripts/fetch_model.py

run: install model
	$(BIN)/python -m functions.local_host

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest -q tests/unit

test: install model lint typecheck
	$(BIN)/pytest -q

bench: install model
	$(BIN)/python scripts/bench_embeddings.py

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
