# meshnode: the two commands a new user needs are `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench venv clean

venv: $(STAMP)

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || \
	  { echo "meshnode needs Python >= 3.11 (found: $$($(PYTHON) --version 2>&1))"; exit 1; }
	@$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  echo ""; \
	  echo "Could not create a virtual environment: the venv module is missing."; \
	  echo "On Debian / Raspberry Pi OS install it with:  sudo apt install python3-venv"; \
	  exit 1; }

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/meshnode run

test: $(STAMP)
	HYPOTHESIS_PROFILE=$${HYPOTHESIS_PROFILE:-ci} $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check meshnode tests
	$(BIN)/ruff format --check meshnode tests
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m meshnode.bench ingest --json
	$(BIN)/python -m meshnode.bench reopen --json
	$(BIN)/python -m meshnode.bench replication --json
	$(BIN)/python -m meshnode.bench lan --json
	$(BIN)/python -m meshnode.bench radio --json

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis
