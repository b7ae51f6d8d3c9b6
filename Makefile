# aisafe: `make run` starts the embedded stack with the sample proposal; `make test` runs every test.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench bench-scale demo clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test,postgres,bench]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/aisafe dev --sample examples/operational-framework.yaml --roster examples/roster.yaml

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q --durations=15 $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python -m bench

# Goal 3 of the performance issue: 1,000 proposals open at once on one worker process (long: see README).
bench-scale: $(STAMP)
	$(BIN)/python -m bench.scale --proposals 1000 --out bench/scale-results.json

demo: $(STAMP)
	$(BIN)/aisafe demo

clean:
	rm -rf $(VENV) .aisafe .pytest_cache
