# Two entry points, each self-contained on a fresh machine with Python 3.11 and pip:
#   make demo   - create .venv, install pgolf, run the main job on the embedded default
#   make test   - create .venv, install pgolf with test extras, run the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.pgolf-installed
PYTEST_WORKERS ?= 2

.PHONY: demo test install

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# The CPU build first: any later `torch>=` requirement is then already satisfied and pip
	# never resolves the multi-GB CUDA wheels.
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/pgolf demo

test: $(STAMP)
	# Headless Chromium for the report.html screenshot test: Debian's package where we can (root +
	# apt-get), best effort and quiet; without it that one test is skipped with the reason.
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1 || true
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) tests
