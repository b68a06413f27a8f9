# The two commands of the README. Each creates the virtual environment .venv on first use.
#   make reproduce   every notebook through papermill at the quick preset into outputs/ (2 at a time)
#   make test        the whole test suite (notebooks included, at the smoke preset); the 25 slowest tests at its end
#   make test-fast   unit and real-data tests only, for iterating (no kernels, worker pools, Dask or smoke notebooks)
# PYTEST_ARGS passes more options to pytest (.ci/run: a junit XML report under outputs/)
PYTHON ?= python3
# notebooks run side by side (each with 1/JOBS of the cores, bnlib.lab.cores); JOBS=1 runs them one after another
JOBS ?= 2
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: reproduce test test-fast

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

reproduce: $(BIN)/.installed
	$(BIN)/python -m bnlib.run --preset quick --out outputs --jobs $(JOBS)

test: $(BIN)/.installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(BIN)/.installed
	$(BIN)/python -m pytest -m "not slow and not notebook" $(PYTEST_ARGS)
