# One-command setup: `make test` and `make demo` create .venv on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test demo lint bench clean

setup: $(STAMP)

# torch first, pinned to the CPU wheel: an unpinned torch pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: setup
	$(VENV)/bin/pytest -q -ra

demo: setup
	$(PY) -m lineage.demo

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: setup
	$(PY) bench/graph.py
	$(PY) bench/storage.py
	$(PY) bench/cascade.py

clean:
	rm -rf $(VENV) .pytest_cache
