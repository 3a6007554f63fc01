"""The cascade with a Dask task runner on a real two-process local cluster.

Tasks receive only plain values (the workspace path, the plan node, refs) and re-open
the workspace inside the worker processes; the recipes run there too (inline runner),
so the pids they record show where the work happened.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cascade_helpers import HERE, provenance
from click.testing import Result
from typer.testing import CliRunner

from lineage.ops.add import add, commit
from lineage.testing import write_tiny_weights
from lineage.workspace import Workspace

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def two_branches(tmp_path: Path, toy_path: None) -> Workspace:
    """base → a → a-q and base → b (independent branches), a size test on base, base@2.

    Every descendant uses `hang_while` (no flag: it only scales), which records the
    pid of the process it ran in as a metric.
    """
    from lineage.ops.code import trust
    from lineage.ops.tests import declare_model_test

    ws = Workspace.init(tmp_path / "ws")
    trust(ws, "toy_recipes")
    add(ws, "base", source=write_tiny_weights(tmp_path / "w0", 0))
    for seed, (name, parent) in enumerate([("a", "base@1"), ("b", "base@1"), ("a-q", "a@1")], 1):
        add(
            ws,
            name,
            source=write_tiny_weights(tmp_path / f"w{seed}", seed),
            parents=[parent],
            kind="other",
            provenance=provenance("hang_while"),
        )
    declare_model_test(ws, "base", "small-enough", "size", {"max_params": 100_000})
    commit(ws, "base", source=write_tiny_weights(tmp_path / "w9", 9))
    return ws


def _cascade(ws: Workspace, *args: str) -> Result:
    from lineage.cli.main import app

    return CliRunner().invoke(app, ["-w", str(ws.root), "cascade", "base@2", *args])


def test_cascade_on_a_local_dask_cluster(
    two_branches: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)  # ephemeral server, shared
    # The worker processes import the toy recipes by module name, as any user recipe.
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    )
    result = _cascade(
        two_branches,
        *("--runner", "inline", "--task-runner", "dask", "--dask-workers", "2"),
        *("--concurrency", "2", "--retries", "0", "--no-track", "--json"),
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert {n["model"]: n["status"] for n in summary["nodes"]} == {
        "a": "promoted",
        "b": "promoted",
        "a-q": "promoted",
    }, summary["nodes"]

    ws = Workspace.open(two_branches.root)
    pids = set()
    for model, parent in [("a", "base@2"), ("b", "base@2"), ("a-q", "a@2")]:
        version = ws.resolve(f"{model}@2")
        assert [p.ref for p in version.derivation_parents] == [parent]
        assert [p.ref for p in version.parents if p.edge_type == "versioning"] == [f"{model}@1"]
        assert "champion" in version.aliases
        results = ws.graph.latest_results(version.id)
        assert list(results) == ["small-enough"] and results["small-enough"].passed
        pids.add(int(version.extra["metrics"]["pid"]))
    # The recipes ran in the cluster's worker processes, not in this one.
    assert os.getpid() not in pids


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task-runner", "ray"], "unknown task runner 'ray'"),
        (["--task-runner", "thread", "--dask-address", "tcp://h:1"], "need --task-runner dask"),
        (["--task-runner", "thread", "--dask-workers", "3"], "need --task-runner dask"),
        (
            ["--task-runner", "dask", "--dask-address", "tcp://h:1", "--dask-workers", "2"],
            "not with --dask-address",
        ),
        (["--task-runner", "dask", "--dask-address", "scheduler:8786"], "expected tcp://"),
    ],
)
def test_bad_task_runner_options_fail_before_anything_runs(
    two_branches: Workspace, args: list[str], message: str
) -> None:
    from lineage.errors import UsageError

    result = _cascade(two_branches, *args)
    # The console script prints it as one `error:` line and exits 2 (UsageError).
    assert isinstance(result.exception, UsageError), result.output
    assert message in str(result.exception)
    assert Workspace.open(two_branches.root).model("a").latest == 1


def test_dask_runner_settings() -> None:
    from prefect_dask import DaskTaskRunner

    from flows.cascade import build_task_runner

    local = build_task_runner("dask", dask_workers=3)
    assert isinstance(local, DaskTaskRunner) and local.address is None
    assert local.cluster_kwargs == {
        "n_workers": 3,
        "processes": True,
        "threads_per_worker": 1,
        "host": "127.0.0.1",
        "dashboard_address": None,
    }
    remote = build_task_runner("dask", dask_address="tcp://scheduler:8786")
    assert remote.address == "tcp://scheduler:8786" and not remote.cluster_kwargs
