# The two commands of the README. Each creates the virtual environment .venv on first use.
#   make reproduce   every notebook through papermill at the quick preset into outputs/ (2 at a time)
#   make test        the whole test suite (notebooks included, at the smoke preset)
PYTHON ?= python3
# notebooks run side by side (each with 1/JOBS of the cores, bnlib.cores); JOBS=1 runs them one after another
JOBS ?= 2
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: reproduce test

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

reproduce: $(BIN)/.installed
	$(BIN)/python -m bnlib.run --preset quick --out outputs --jobs $(JOBS)

test: $(BIN)/.installed
	$(BIN)/python -m pytest
