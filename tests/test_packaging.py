"""Packaging and the example CI, checked as text: compatible ranges in pyproject.toml,
exact pins in constraints.txt (used by `make setup`), and an upstream workflow that
fails on a failing pipe and never splices inputs into its scripts."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]


def _pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_dependencies_are_ranges_and_constraints_pin_each_exactly() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(r) for r in project["dependencies"]]
    for extra, listed in project["optional-dependencies"].items():
        requirements += [Requirement(r) for r in listed if not r.startswith(project["name"])]
        assert extra in {"postgres", "s3", "dask", "docker", "demo", "all", "dev"}
    pins = _pins()
    for requirement in requirements:
        operators = {spec.operator for spec in requirement.specifier}
        assert operators == {">=", "<"}, f"{requirement}: a compatible range"
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        assert name in pins, f"{name} is not pinned in constraints.txt"
        assert requirement.specifier.contains(pins[name]), (requirement, pins[name])
    assert pins["torch"] == "2.13.0" and pins["mlflow"] == "3.17.2" and pins["prefect"] == "3.9.1"
    extras = project["optional-dependencies"]["all"][0]
    assert extras == "lineage-modelops[postgres,s3,dask,docker,demo]"


def test_make_setup_installs_torch_first_then_everything_with_the_pins() -> None:
    makefile = (REPO / "Makefile").read_text()
    torch = makefile.index("-c $(CONSTRAINTS) torch==2.13.0")
    rest = makefile.index("-c $(CONSTRAINTS) -e '.[all,dev]'")
    assert torch < rest


def test_upstream_workflow_runs_bash_with_pipefail_and_inputs_through_the_environment() -> None:
    text = (REPO / ".github/workflows/upstream.yml").read_text()
    workflow = yaml.safe_load(text)
    assert workflow["defaults"]["run"]["shell"] == "bash"  # bash -eo pipefail {0}
    (job,) = workflow["jobs"].values()
    checkout = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout"))
    assert checkout["with"]["lfs"] is True
    assert job["env"]["ANNOUNCE_REF"] == "${{ inputs.ref }}"
    for step in job["steps"]:
        script = step.get("run", "")
        assert "${{" not in script, f"{step.get('name')}: an expression spliced into run"
        if "|" in script:
            assert "set -euo pipefail" in script
