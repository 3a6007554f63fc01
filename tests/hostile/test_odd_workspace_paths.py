"""A workspace whose path holds URL syntax (`?`, `#`, `%20`, spaces) keeps its databases
inside it: URL parsers would otherwise cut the path at `?` or `#` and unescape `%20`,
and put the graph DB (or MLflow's) somewhere else."""

from __future__ import annotations

from pathlib import Path

from lineage.graph.db import sqlite_path
from lineage.testing import run_cli, write_tiny_weights
from lineage.tracking.backend import embedded_uri
from lineage.workspace import Workspace

ODD = "odd dir%20x?y#z"


def test_a_workspace_under_a_url_like_path_keeps_its_databases_inside(tmp_path: Path) -> None:
    parent = tmp_path / ODD
    parent.mkdir()
    run_cli(["init", "ws"], parent)
    workspace = parent / "ws"
    run_cli(["add", "base", "--from", str(write_tiny_weights(tmp_path / "w", 0))], workspace)
    listed = run_cli(["log", "base", "--json"], workspace)
    assert '"base@1"' in listed.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([ODD, "w"])  # nothing leaked
    assert [p.name for p in parent.iterdir()] == ["ws"]
    ws = Workspace.open(workspace)
    assert sqlite_path(ws.graph_url) == str(workspace / ".lineage" / "graph.db")
    assert sqlite_path(embedded_uri(ws)) == str(workspace / ".lineage" / "mlflow" / "mlflow.db")
