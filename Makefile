# Everything runs from a project-local virtual environment (.venv), created on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.llmctl-installed
TINY   := .cache/tiny-model

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# A pinned CPU torch first: an unpinned one pulls gigabytes of CUDA packages.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[transformers,test,plot]'
	touch $(STAMP)

install: $(STAMP)

# Build a tiny random chat model, serve it on CPU with transformers, smoke it, stop it.
# (order-only: an existing venv is used as it is; a fresh checkout creates it first)
demo: | $(STAMP)
	$(BIN)/python -m tests.tinymodel $(TINY)
	PATH="$(abspath $(BIN)):$$PATH" sh scripts/demo.sh

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .cache .pytest_cache
