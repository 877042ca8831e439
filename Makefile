# make demo  — set up .venv and run the demo experiment, then print where the results are.
# make test  — set up .venv (with dev extras) and run the whole test suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is pinned to a release whose CPU wheel installs offline here; on other machines any torch
# >= 2.2 that suits your hardware works (install it first and set TORCH_SPEC= to skip this pin).
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= dev,transformers,ray,offline-minilm,audit,mlflow
# The demo reads IMDB from the Hugging Face hub, or from a local copy when one sits beside the repo.
DATA ?= $(if $(wildcard ../shared/data/imdb),../shared/data/imdb,imdb)
DEMO_CONFIG ?= examples/laptop-tfidf.toml
DEMO_NAME := $(basename $(notdir $(DEMO_CONFIG)))

.PHONY: setup demo test lint typecheck browser clean

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(if $(TORCH_SPEC),$(PY) -m pip install -q "$(TORCH_SPEC)")
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/noisegrid run $(DEMO_CONFIG) --set dataset.source=$(DATA)
	$(VENV)/bin/noisegrid report $(DEMO_CONFIG) --set dataset.source=$(DATA) --out reports/$(DEMO_NAME)
	@echo
	@echo "results:  runs/$(DEMO_NAME).sqlite  (noisegrid export $(DEMO_CONFIG) --format csv --out results.csv)"
	@echo "report:   reports/$(DEMO_NAME)/report.html  and  reports/$(DEMO_NAME)/summary.md"

# Headless Chromium renders the HTML report in the browser tests (Debian/Ubuntu; needs root).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	    (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) ; } || \
	  echo "chromium not installed: browser tests will be skipped"

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/lint-imports

typecheck: setup
	$(VENV)/bin/mypy

test: setup browser lint typecheck
	$(VENV)/bin/pytest -q --doctest-modules src tests

clean:
	rm -rf $(VENV) runs reports .pytest_cache .mypy_cache .ruff_cache
