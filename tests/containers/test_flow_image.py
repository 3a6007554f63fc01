"""The flow image (`lineage-flow`), which the docker work pool in deployments.yaml runs.

Needs a Docker engine (skipped without one, failed under CI=true, by the fixtures in
conftest.py). The image is built here when `make image-flow` has not built it for this
source: about 2.5 min the first time on a 2-core machine, under a second when it exists.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from typing import Any

import pytest

pytestmark = pytest.mark.docker

IMPORTS = "import flows.cascade, lineage.tracking, lineage.cli.main; import prefect"


@pytest.fixture(scope="session")
def flow_image(docker_engine: Any, task_image: Any) -> Any:
    """The flow image for the current source, built on the session's task image."""
    from containers.build import build_flow_image

    return build_flow_image(client=docker_engine)


def _run(docker_engine: Any, image: str, command: list[str], labels: dict[str, str]) -> str:
    """Run `command` in a container without network and return its output."""
    output = docker_engine.containers.run(
        image, command, network_mode="none", remove=True, labels=labels, stderr=True
    )
    return output.decode().strip()


def test_flow_image_imports_the_flows_and_prefect(
    docker_engine: Any,
    flow_image: Any,
    task_image: Any,
    run_label: dict[str, str],
    leftovers: Callable[[], list[Any]],
) -> None:
    """The flows, tracking and the CLI import in the image, with the host's Prefect."""
    assert flow_image.tag.startswith("lineage-flow:")
    assert flow_image.base_image == task_image.tag
    assert docker_engine.images.get("lineage-flow:latest").id == flow_image.image_id
    command = ["python", "-c", f"{IMPORTS}; print(prefect.__version__)"]
    output = _run(docker_engine, flow_image.tag, command, run_label)
    assert output.splitlines()[-1] == importlib.metadata.version("prefect"), output
    assert leftovers() == []


def test_flow_image_runs_a_workers_command_as_given(
    docker_engine: Any,
    flow_image: Any,
    run_label: dict[str, str],
    leftovers: Callable[[], list[Any]],
) -> None:
    """No entrypoint in the way of `prefect flow-run execute`; a non-root user; the
    deployment's entrypoint resolves from the working directory deployments.yaml sets."""
    config = docker_engine.images.get(flow_image.tag).attrs["Config"]
    assert not config.get("Entrypoint")
    assert config["User"] == "10001:10001"
    assert "LINEAGE_WORKSPACE=/workspace" in config["Env"]
    script = (
        "import os; from prefect.flows import load_flow_from_entrypoint as load; "
        "print(os.getuid(), os.getcwd(), load('flows/cascade.py:cascade_flow').name)"
    )
    output = _run(docker_engine, flow_image.tag, ["python", "-c", script], run_label)
    assert output.splitlines()[-1] == "10001 /opt/lineage lineage-cascade", output
    assert leftovers() == []
