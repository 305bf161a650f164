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
	$(BIN)/pgolf budget --baseline

test: $(STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) tests
