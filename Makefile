# The two commands of the README. Each creates the virtual environment .venv on first use.
#   make reproduce   every notebook through papermill at the quick preset into outputs/ (2 at a time)
#   make test        the whole test suite (notebooks included, at the smoke preset); the 25 slowest tests at its end
#   make test-fast   unit and real-data tests only, for iterating (no kernels, worker pools, Dask or smoke notebooks)
#   make lab         JupyterLab on this repository (notebooks/ and the executed outputs/reference/ in its file browser)
#   make site        static HTML of the executed references and FINDINGS.md into outputs/site/ (open outputs/site/index.html)
# PYTEST_ARGS passes more options to pytest (.ci/run: a junit XML report under outputs/)
PYTHON ?= python3
# notebooks run side by side (each with 1/JOBS of the cores, bnlib.lab.cores); JOBS=1 runs them one after another
JOBS ?= 2
VENV ?= .venv
BIN := $(VENV)/bin
# more options for `jupyter lab` (LAB_ARGS="--no-browser --port 8899"); as root it adds --allow-root, which it needs there
LAB_ARGS ?=
ROOT_ARGS := $(if $(filter 0,$(shell id -u)),--allow-root)

.PHONY: reproduce test test-fast lab site

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

lab: $(BIN)/.installed
	$(BIN)/python -m jupyter lab --ServerApp.root_dir="$(CURDIR)" $(ROOT_ARGS) $(LAB_ARGS)

site: $(BIN)/.installed
	$(BIN)/python -m bnlib.lab.site --out outputs/site
