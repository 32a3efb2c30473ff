# The two commands a newcomer needs: `make run` (set up and run the main job) and `make test`.
# Both start with `setup`: Debian packages this machine lacks, a Docker engine, a working venv.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin

.PHONY: run test test-kube unit lint bench setup install engine-up images fresh-machine clean

run: setup install images
	$(BIN)/dockyard up
	$(BIN)/dockyard demo
	@echo "done: run 'dockyard status', 'dockyard down --volumes' to remove the stack"

test: setup lint images
	$(BIN)/pytest -n 2 tests

# The Kubernetes tests, in one process: they share the test cluster scripts/test-cluster.sh
# builds (once per source version) and starts, and remove it at the end.
test-kube: setup images
	$(BIN)/pytest -n 0 tests/integration/kube

unit: setup
	$(BIN)/pytest tests/unit

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

bench: setup images
	$(BIN)/python -m benchmarks

setup:
	@scripts/host-packages.sh
	@scripts/host-engine.sh
	@PY=$(PY) scripts/venv.sh

engine-up:
	@scripts/host-packages.sh
	@scripts/host-engine.sh

install: setup
	@scripts/install-launcher.sh

images: setup
	$(BIN)/dockyard images build --role all

# The README's two commands in a stock Debian 12 container: what a new user meets.
fresh-machine:
	scripts/fresh-machine.sh

clean:
	rm -rf $(VENV) build src/*.egg-info
