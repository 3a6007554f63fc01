"""Fixtures for the runner and task image tests: a real Docker engine and task image.

A missing engine skips the docker tests with the reason on a laptop, and fails them
under CI=true, where `.ci/run` is responsible for starting one.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import socket
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lineage.steps.engine import engine_available
from lineage.testing import require_service


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[Any]:
    """A client for a live Docker engine (skip/fail as above when there is none)."""
    ok, reason = engine_available()
    require_service(ok, f"no Docker engine: {reason}")
    from lineage.steps.engine import connect

    client = connect()
    yield client
    client.close()


@pytest.fixture(scope="session")
def task_image(docker_engine: Any) -> Any:
    """The task image for the current source (built now if `make image` has not)."""
    from containers.build import build_task_image

    return build_task_image(client=docker_engine)


@pytest.fixture
def run_label() -> dict[str, str]:
    """A label unique to one test, to check that none of its containers is left."""
    return {"lineage.test": uuid.uuid4().hex}


@pytest.fixture
def leftovers(docker_engine: Any, run_label: dict[str, str]) -> Callable[[], list[Any]]:
    """Call it to list this test's containers still on the engine (should be none)."""

    def find() -> list[Any]:
        filters = {"label": [f"{key}={value}" for key, value in run_label.items()]}
        return list(docker_engine.containers.list(all=True, filters=filters))

    return find


@pytest.fixture
def docker_runner(docker_engine: Any, task_image: Any, run_label: dict[str, str]) -> Any:
    """A docker runner on the fresh task image, tagging its containers with `run_label`."""
    from lineage.steps.runners.docker import DockerRunner

    return DockerRunner(task_image.tag, memory="2g", cpus=2, labels=run_label)


@pytest.fixture(scope="session")
def host_listener(docker_engine: Any) -> Iterator[str]:
    """A TCP server on the host, reachable from a bridged container: `host:port`.

    Gives the network checks a target that really answers when a network exists, so
    "unreachable" from the locked-down container is not vacuous.
    """
    bridge = docker_engine.networks.get("bridge")
    ipam = bridge.attrs["IPAM"]["Config"][0]
    # Some engines leave Gateway out of the IPAM config: it is the subnet's first host.
    gateway = ipam.get("Gateway") or str(next(ipaddress.ip_network(ipam["Subnet"]).hosts()))
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", 0))
    server.listen(16)
    port = server.getsockname()[1]
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.5)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                conn.close()
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"{gateway}:{port}"
    stop.set()
    thread.join(timeout=2)
    server.close()


@pytest.fixture(scope="session")
def shared_dir() -> Iterator[Path]:
    """A temp folder the container's unprivileged user can read (pytest's are 0700)."""
    path = Path(tempfile.mkdtemp(prefix="lineage-ctest-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_parent(shared_dir: Path) -> Path:
    """A tiny random BERT classifier (MiniLM's tokenizer): a parent that trains in a blink."""
    from lineage.bundled import make_tiny_model

    return make_tiny_model(shared_dir / "tiny", num_labels=2, seed=3)


@pytest.fixture(scope="session")
def tiny_data(shared_dir: Path) -> Path:
    """A small labelled JSONL data set (two topics), readable from the container."""
    path = shared_dir / "train.jsonl"
    rows = [
        ("the match ended in a late goal", "sport"),
        ("shares fell on weak profits", "business"),
    ]
    with open(path, "w") as handle:
        for i in range(24):
            text, label = rows[i % 2]
            handle.write(json.dumps({"text": f"{text} {i}", "label": label}) + "\n")
    return path


@pytest.fixture
def out_root(shared_dir: Path) -> Iterator[Path]:
    """A fresh folder for one test's step outputs (under the shared temp folder)."""
    path = Path(tempfile.mkdtemp(prefix="out-", dir=shared_dir))
    yield path
    shutil.rmtree(path, ignore_errors=True)
