"""Tracking off the critical path: the durable queue and the background writer.

Real processes throughout: the CLI in a subprocess, the detached writer it starts, a
real `mlflow server` (and a dead port for an unreachable one), a writer killed with
SIGKILL half-way.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from lineage.errors import TrackingError
from lineage.ops.add import add, commit
from lineage.testing import free_port
from lineage.tracking import mlflow_session, sync_workspace, writer
from lineage.tracking import queue as mlflow_queue
from lineage.workspace import Workspace

LINEAGE = [sys.executable, "-m", "lineage.cli.main"]


def _cli(args: list[str], root: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "LINEAGE_WORKSPACE": str(root), **env}
    return subprocess.run(
        [*LINEAGE, *args], capture_output=True, text=True, env=full_env, timeout=300
    )


def _wait_until_drained(ws: Workspace, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while mlflow_queue.has_pending(ws):
        if time.monotonic() > deadline:
            log = (mlflow_queue.queue_dir(ws) / "writer.log").read_text(errors="replace")
            raise AssertionError(f"queue not drained in {timeout}s; writer.log:\n{log[-2000:]}")
        time.sleep(0.5)
    # The writer lets go of its lock once it has nothing left.
    with mlflow_queue.writer_lock(ws, blocking=True):
        pass


def _registered(ws: Workspace, name: str) -> list[str]:
    with mlflow_session(ws) as client:
        return sorted(str(mv.version) for mv in client.search_model_versions(f"name='{name}'"))


def test_a_command_returns_while_mlflow_is_down_and_nothing_is_lost(
    tmp_path: Path, tiny_weights: Any, mlflow_server: str
) -> None:
    ws = Workspace.init(tmp_path / "ws")
    dead = f"http://127.0.0.1:{free_port()}"
    background = {"LINEAGE_MLFLOW_WRITER": "background", "MLFLOW_TRACKING_URI": dead}

    # The command writes the lineage DB and returns; MLflow is not on its path.
    added = _cli(["add", "m", "--from", str(tiny_weights(0)), "--json"], ws.root, **background)
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["ref"] == "m@1"
    assert "MLflow" not in added.stderr
    assert mlflow_queue.has_pending(ws)  # kept for later, durably

    # `lineage sync mlflow` says so in one line (exit 14) while the server is down...
    down = _cli(["sync", "mlflow"], ws.root, MLFLOW_TRACKING_URI=dead)
    assert down.returncode == TrackingError.exit_code
    assert down.stderr.count("\n") == 1 and "unreachable" in down.stderr
    assert "still queued" in down.stderr
    assert mlflow_queue.has_pending(ws)  # an unreachable server costs no attempts
    assert all(job.attempts == 0 for job in mlflow_queue.pending(ws))

    # ... and writes everything once it is back.
    up = _cli(["sync", "mlflow", "--json"], ws.root, MLFLOW_TRACKING_URI=mlflow_server)
    assert up.returncode == 0, up.stderr
    report = json.loads(up.stdout)
    assert report["queued_written"] == 1 and report["registered"] == ["m@1"]
    assert not mlflow_queue.has_pending(ws)
    os.environ["MLFLOW_TRACKING_URI"] = mlflow_server
    try:
        assert _registered(ws, "m") == ["1"]
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI")


def test_the_background_writer_drains_and_a_killed_writer_loses_nothing(
    tmp_path: Path, tiny_weights: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = Workspace.init(tmp_path / "ws")
    # Queued only, then one writer is started by hand and killed once it has written
    # at least one record.
    add(ws, "a", source=tiny_weights(0))
    for seed in range(1, 4):
        commit(ws, "a", source=tiny_weights(seed))
    add(ws, "b", source=tiny_weights(4), parents=["a@2"], kind="finetune")
    jobs = len(mlflow_queue.pending(ws))
    assert jobs == 5
    writer.start_background_writer(ws)
    child = writer._children[-1]
    deadline = time.monotonic() + 180
    while len(mlflow_queue.pending(ws)) == jobs and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert mlflow_queue.has_pending(ws), "the writer finished before it could be killed"

    # The next writer, started by the next queued job, picks up where it died.
    monkeypatch.setenv("LINEAGE_MLFLOW_WRITER", "background")
    commit(ws, "b", source=tiny_weights(5))
    _wait_until_drained(ws)
    # Every version once, under its own number, parents first.
    assert _registered(ws, "a") == ["1", "2", "3", "4"]
    assert _registered(ws, "b") == ["1", "2"]
    report = sync_workspace(ws)
    assert not report.changed, report
    assert report.foreign_versions == {}
