"""The same MLflow mirror against a real `mlflow server` (REST), plus faults:
an unreachable server fails with one clear line and leaves the lineage DB
consistent, and `lineage sync mlflow` repairs MLflow afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select

from lineage.errors import TrackingError
from lineage.graph import schema as t
from lineage.ops.add import add, commit
from lineage.ops.promote import promote, rollback
from lineage.testing import free_port
from lineage.tracking import mlflow_session, record_derive, sync_workspace, tracking_uri
from lineage.workspace import Workspace

from .conftest import mlflow_uri, record_results


def _server_workspace(root: Path, uri: str) -> Workspace:
    ws = Workspace.init(root)
    ws.config.mlflow_tracking_uri = uri  # what `[mlflow] tracking_uri` in config.toml sets
    return ws


def _aliases(ws: Any, name: str) -> dict[str, int]:
    with mlflow_session(ws) as client:
        found = {}
        for alias in client.get_registered_model(name).aliases or {}:
            mv = client.get_model_version_by_alias(name, alias)
            found[alias] = int(mv.tags["lineage.version"])
        return found


def test_server_mirror_promote_rollback_and_load(
    mlflow_server: str, tmp_path: Path, tiny_berts: dict[str, Path], monkeypatch: Any
) -> None:
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    ws = _server_workspace(tmp_path / "ws", mlflow_server)
    assert tracking_uri(ws) == mlflow_server
    add(ws, "srv-base", source=tiny_berts["s0"])
    add(ws, "srv-clf", source=tiny_berts["s1"], parents=["srv-base@1"], kind="finetune")
    commit(ws, "srv-clf", source=tiny_berts["s0"])
    run_id = record_derive(
        ws, ws.resolve("srv-clf@2"), metrics={"accuracy": 0.7}, loss_curve=[(1, 0.9), (2, 0.4)]
    )
    for ref in ("srv-base@1", "srv-clf@1", "srv-clf@2"):
        record_results(ws, ref)
    promote(ws, "srv-base@1")
    promote(ws, "srv-clf@1")
    promote(ws, "srv-clf@2", reason="better")
    assert _aliases(ws, "srv-clf") == {"champion": 2, "previous": 1}
    with mlflow_session(ws) as client:
        assert len(client.get_metric_history(run_id, "loss")) == 2
        # Over REST the version is a str; lineage compares it as one everywhere.
        assert isinstance(client.get_model_version_by_alias("srv-clf", "champion").version, str)
    with mlflow_uri(ws):
        model = mlflow.pyfunc.load_model("models:/srv-clf@champion")
        out = np.asarray(model.predict(["good", "bad"]))
    assert out.shape == (2, 2)

    rollback(ws, "srv-clf", reason="regression in prod")
    assert ws.model("srv-clf").aliases == {"champion": 1}
    assert _aliases(ws, "srv-clf") == {"champion": 1}


def test_unreachable_server_fails_clearly_and_sync_repairs(
    mlflow_server: str, tmp_path: Path, tiny_weights: Any, monkeypatch: Any
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", dead)
    ws = Workspace.init(tmp_path / "ws")
    add(ws, "fault", source=tiny_weights(0))
    add(ws, "fault-ft", source=tiny_weights(1), parents=["fault@1"], kind="finetune")
    for ref in ("fault@1", "fault-ft@1"):
        record_results(ws, ref)

    started = time.monotonic()
    with pytest.raises(TrackingError) as caught:
        promote(ws, "fault@1")
    assert time.monotonic() - started < 30
    message = str(caught.value)
    assert "\n" not in message and "unreachable" in message and dead in message
    # The lineage DB did not get ahead of MLflow.
    assert ws.model("fault").aliases == {}
    with ws.graph.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.alias_events)).scalar() == 0
    with pytest.raises(TrackingError, match="unreachable"):
        record_derive(ws, ws.resolve("fault-ft@1"), metrics={}, loss_curve=[])

    # The CLI prints that one line and exits with TrackingError's code.
    env = {**os.environ, "MLFLOW_TRACKING_URI": dead, "LINEAGE_WORKSPACE": str(ws.root)}
    proc = subprocess.run(
        [sys.executable, "-m", "lineage.cli.main", "promote", "fault@1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == TrackingError.exit_code, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: MLflow tracking")

    # Work recorded in lineage while MLflow was down (promoted without tracking)...
    promote(ws, "fault-ft@1", reason="hotfix while MLflow was down", mlflow="off")
    # ... is repaired once the server is back, idempotently.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    report = sync_workspace(ws)
    assert report.changed and "fault-ft" in report.aliases_changed
    assert _aliases(ws, "fault-ft") == {"champion": 1}
    assert not sync_workspace(ws).changed
    promote(ws, "fault@1")
    assert _aliases(ws, "fault") == {"champion": 1}
