# The two commands a newcomer needs: `make run` (set up and run the main job) and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: run test unit lint bench engine-up images clean

run: $(STAMP) engine-up images
	$(BIN)/dockyard up
	$(BIN)/dockyard demo

test: $(STAMP) engine-up lint images
	$(BIN)/pytest -n 2 tests

unit: $(STAMP)
	$(BIN)/pytest tests/unit

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

bench: $(STAMP) engine-up images
	$(BIN)/python -m benchmarks

engine-up:
	scripts/host-engine.sh

images: $(STAMP) engine-up
	$(BIN)/dockyard images build --role all

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) build src/*.egg-info
