"""The cascade with no Prefect server (ephemeral mode) and with MLflow tracking on;
the CLI's dry run."""

from __future__ import annotations

import json
from pathlib import Path
from uuid import UUID

import pytest
from cascade_helpers import provenance
from typer.testing import CliRunner

from lineage.ops.add import add, commit
from lineage.ops.promote import set_model_policy
from lineage.testing import write_tiny_weights
from lineage.workspace import Workspace

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def small_family(tmp_path: Path, toy_path: None) -> Workspace:
    """base → ft → ft-q (ft-q promotes only by approval), a size test on base, base@2."""
    from lineage.ops.code import trust
    from lineage.ops.tests import declare_model_test

    ws = Workspace.init(tmp_path / "ws")
    trust(ws, "toy_recipes")
    add(ws, "base", source=write_tiny_weights(tmp_path / "w0", 0))
    add(
        ws,
        "ft",
        source=write_tiny_weights(tmp_path / "w1", 1),
        parents=["base@1"],
        kind="finetune",
        provenance=provenance("scale", factor=0.5),
    )
    add(
        ws,
        "ft-q",
        source=write_tiny_weights(tmp_path / "w2", 2),
        parents=["ft@1"],
        kind="quantize",
        provenance=provenance("scale", factor=2.0),
    )
    set_model_policy(ws, "ft-q", require_approval=True)
    declare_model_test(ws, "base", "small-enough", "size", {"max_params": 100_000})
    commit(ws, "base", source=write_tiny_weights(tmp_path / "w3", 3))
    return ws


def test_dry_run_prints_the_plan_and_runs_nothing(small_family: Workspace) -> None:
    from lineage.cli.main import app

    runner = CliRunner()
    result = runner.invoke(app, ["-w", str(small_family.root), "cascade", "base@2", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "2 to re-derive in 2 level(s)" in result.output
    assert "ft@1 -> ft@next" in result.output
    as_json = runner.invoke(
        app, ["-w", str(small_family.root), "cascade", "base@2", "--dry-run", "--json"]
    )
    assert json.loads(as_json.output)["levels"] == [["ft"], ["ft-q"]]
    assert small_family.model("ft").latest == 1


def test_local_cascade_with_tracking(
    small_family: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.cascade import run_cascade

    monkeypatch.delenv("PREFECT_API_URL", raising=False)  # Prefect's ephemeral mode
    summary = run_cascade(
        "base@2", workspace=str(small_family.root), runner="inline", retries=0, track=True
    )
    nodes = {n["model"]: n for n in summary["nodes"]}
    assert nodes["ft"]["status"] == "promoted", nodes["ft"]
    assert nodes["ft"]["tests"] == {"passed": True, "total": 1, "failed": []}
    # Needs approval: passes, becomes candidate, is not promoted.
    assert nodes["ft-q"]["status"] == "candidate"
    assert nodes["ft-q"]["aliases"] == ["candidate"]
    ws = Workspace.open(small_family.root)
    assert ws.model("ft").aliases == {"champion": 2}  # promote() consumed `candidate`
    # MLflow holds the derive and test runs, tagged with the Prefect flow run, once the
    # queue the cascade filled (off its path) is written.
    from lineage.tracking import mlflow_session, sync_workspace

    sync_workspace(ws)
    with mlflow_session(ws) as client:
        experiments = [e.experiment_id for e in client.search_experiments()]
        runs = client.search_runs(experiments, "tags.`lineage.ref` = 'ft@2'")
    steps = {run.data.tags.get("lineage.step") for run in runs}
    assert {"derive", "test"} <= steps, steps
    assert all(run.data.tags.get("prefect.flow_run_id") == summary["flow_run_id"] for run in runs)
    # The run is recorded for `lineage ui`, and the flow run's artifacts link there.
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    from lineage.cascade.history import list_cascade_runs

    (record,) = list_cascade_runs(ws)
    assert record.id == summary["cascade_run_id"]
    assert (record.upstream, record.replaces) == ("base@2", "base@1")
    assert record.flow_run_id == summary["flow_run_id"] and record.status == "passed"
    assert {n["model"]: n["status"] for n in record.nodes} == {
        "ft": "promoted",
        "ft-q": "candidate",
    }
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["base-2-cascade-ui"]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(summary["flow_run_id"])]),
            )
        )
    assert [a.data for a in artifacts] == [
        f"[cascade base@1 → base@2 in lineage ui](http://127.0.0.1:8765/#/cascade/{record.id})"
    ]
