# One-command setup: `make test` and `make demo` create .venv on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

CONSTRAINTS := constraints.txt

.PHONY: setup test demo lint bench clean image image-if-engine image-flow services constraints

setup: $(STAMP)

# The exact versions of constraints.txt (pyproject.toml has the compatible ranges), with
# every extra (postgres, s3, dask, docker, demo) so that all tests can run. torch first,
# pinned to the CPU wheel: an unpinned torch pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml setup.py lineage/store/_planes.c $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) torch==2.13.0
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e '.[all,dev]'
	touch $(STAMP)

# Re-pin constraints.txt from .venv (after changing a range in pyproject.toml and
# installing): its header stays, the pins are what is installed (local labels dropped).
constraints: setup
	{ grep '^#' $(CONSTRAINTS); $(PY) -m pip freeze --exclude-editable | grep -v '^#' \
	  | sed 's/+[a-z0-9.]*$$//' | LC_ALL=C sort -f; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)

# The task image is built first when a Docker engine answers (a no-op when the image for
# this source already exists); pytest's exit code 5 ("no tests collected") is not a failure.
# Then the library's own examples (doctests) run.
test: setup image-if-engine
	$(VENV)/bin/pytest -q -ra || [ $$? -eq 5 ]
	$(VENV)/bin/pytest -q --doctest-modules lineage

demo: setup
	$(PY) -m lineage.demo

# Style, the import-layer contract (pyproject.toml [tool.importlinter]) and types.
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	PYTHONPATH=. $(VENV)/bin/lint-imports
	PYTHONPATH=. $(VENV)/bin/mypy

bench: setup
	$(PY) bench/graph.py
	$(PY) bench/storage.py
	$(PY) bench/cascade.py
	$(PY) bench/cli.py

clean:
	rm -rf $(VENV) .pytest_cache

# Task image for the docker runner (base image by debootstrap when missing; cached by
# source hash). `make image BASE_IMAGE=python:3.11-slim` builds on a registry image.
BASE_IMAGE ?= lineage-base:bookworm
image: setup
	$(PY) -m containers.build --base-image $(BASE_IMAGE)

image-if-engine: setup
	$(PY) -m containers.build --base-image $(BASE_IMAGE) --if-engine

# Flow image for the docker work pool in deployments.yaml (`lineage-flow:latest`): the task
# image plus Prefect, MLflow and the rest (containers/flow.Dockerfile). Not a prerequisite
# of `make test`: tests/containers/test_flow_image.py builds it (or finds it) itself.
image-flow: setup
	$(PY) -m containers.build --base-image $(BASE_IMAGE) --flow

# Install and start what the tests need (Docker engine, PostgreSQL binaries): root only.
services:
	bash .ci/run --services-only
