"""The CLI's step options (`--runner`, `--threads`) and `lineage server start`."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from cascade_helpers import child_env
from typer.testing import CliRunner

from lineage.bundled import make_tiny_model
from lineage.cli.main import app
from lineage.errors import UsageError
from lineage.testing import free_port
from lineage.workspace import Workspace

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    ws = Workspace.init(tmp_path / "ws")
    from lineage.ops.add import add

    add(ws, "base", source=make_tiny_model(tmp_path / "tiny", num_labels=2, seed=0))
    return ws


def _cli(ws: Workspace, *args: str) -> object:
    return CliRunner().invoke(app, ["-w", str(ws.root), *args])


def test_threads_are_recorded_with_the_version(workspace: Workspace) -> None:
    made = _cli(workspace, "add", "half", "-p", "base@1", "--recipe", "quantize",
                "--param", "dtype=float16", "--threads", "1", "--json")  # fmt: skip
    assert made.exit_code == 0, made.output
    assert json.loads(made.stdout)["extra"]["threads"] == 1
    again = _cli(workspace, "derive", "half@1", "--runner", "process", "--threads", "3", "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["extra"]["threads"] == 3


def test_threads_need_a_recipe(workspace: Workspace, tmp_path: Path) -> None:
    refused = _cli(workspace, "add", "other", "--from", str(tmp_path / "tiny"), "--threads", "1")
    assert isinstance(refused.exception, UsageError)  # exit 2 from `lineage`
    assert "--threads applies to --recipe" in str(refused.exception)
    assert [m.name for m in workspace.models()] == ["base"]  # nothing was added


def test_server_start_refuses_a_port_in_use() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "lineage.cli.main", "server", "start", "--port", str(port)],
            capture_output=True,
            text=True,
            env=child_env(),
            timeout=60,
        )
    assert done.returncode == 2
    assert f"port {port} on 127.0.0.1 is in use" in done.stderr


def test_server_start_runs_a_server_until_interrupted(tmp_path: Path) -> None:
    port = free_port()
    home = tmp_path / "prefect-home"
    process = subprocess.Popen(
        [sys.executable, "-m", "lineage.cli.main", "server", "start", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(
            PREFECT_HOME=str(home),
            PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        ),
        start_new_session=True,
    )
    try:
        assert process.stderr is not None
        deadline = time.monotonic() + 180
        lines = []
        while time.monotonic() < deadline:
            line = process.stderr.readline()
            lines.append(line)
            if "ready at" in line or process.poll() is not None:
                break
        assert any(f"ready at http://127.0.0.1:{port}" in line for line in lines), lines
        assert f"export PREFECT_API_URL=http://127.0.0.1:{port}/api" in process.stderr.readline()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=10) as answer:
            assert answer.status == 200
    finally:
        process.terminate()  # `kill PID`: the server goes with it
        process.wait(timeout=60)
    assert process.returncode == 0
    with pytest.raises(OSError):  # nothing answers any more
        urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=5)
