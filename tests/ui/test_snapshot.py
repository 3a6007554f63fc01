"""What the UI reads from a workspace (`lineage.ui.snapshot`), the cascade record it
draws (`lineage.cascade.history`), the links it makes, and the HTML export, on SQLite
and PostgreSQL."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from family import build_demo_family

from lineage.cascade.history import list_cascade_runs, record_cascade_run
from lineage.graph.migrate import current_revision, downgrade, head_revision
from lineage.ops.add import add
from lineage.render import GraphView
from lineage.render.view import graph_view
from lineage.testing import write_tiny_weights
from lineage.ui import links, snapshot
from lineage.ui.export import export_html, html_from_graph
from lineage.workspace import Workspace

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Any:
    ws = build_demo_family(tmp_path_factory.mktemp("snapshot-demo"))
    yield ws
    ws.close()


def test_snapshot_of_the_demo_family(demo: Workspace) -> None:
    snap = snapshot.build_snapshot(demo)
    refs = {v["ref"] for v in snap["versions"]}
    assert len(refs) == 15 and {"base@1", "base@2", "soup@1", "topic@2"} <= refs
    by_id = {v["id"]: v["ref"] for v in snap["versions"]}
    current = {by_id[i] for i in snap["current"]}
    assert current == {n["ref"] for n in graph_view(demo, all_versions=False).to_dict()["nodes"]}
    assert "sentiment@1" in current  # kept: soup@1 (newest soup) was derived from it
    edges = {(by_id[e["parent"]], by_id[e["child"]], e["edge_type"]) for e in snap["edges"]}
    assert ("base@1", "base@2", "versioning") in edges
    assert ("sentiment-pruned@1", "soup@1", "derivation") in edges
    statuses = {ref: s["status"] for ref, s in snap["statuses"].items()}
    assert statuses["base@1"] == "untested"
    assert statuses["base@2"] == "passed"
    assert statuses["sentiment-pruned@2"] == "failed"
    assert statuses["soup@1"] == "blocked"
    assert snap["statuses"]["sentiment-pruned@1"]["tests"] == {
        "total": 2,
        "passed": 1,
        "failed": 1,
        "untested": 0,
    }
    lora = next(v for v in snap["versions"] if v["ref"] == "sentiment-lora@2")
    assert lora["aliases"] == ["candidate"] and lora["latest"]
    first = next(v for v in snap["versions"] if v["ref"] == "sentiment-lora@1")
    assert set(first["tags"]) == {"demo", "sentiment"} and not first["latest"]
    assert snap["workspace"] == {"name": "demo-workspace", "backend": "SQLite"}
    assert [c["upstream"] for c in snap["cascades"]] == ["base@2"]
    json.dumps(snap, allow_nan=False)  # what the server sends


def test_version_detail(demo: Workspace) -> None:
    storage = snapshot.storage_by_ref(demo)
    detail = snapshot.version_detail(demo, "soup@1", storage=storage)
    prov = detail["provenance"]
    assert prov["recipe"] == "merge" and prov["params"] == {"weights": [0.7, 0.3]}
    assert [p["ref"] for p in prov["parents"]] == ["sentiment@1", "sentiment-pruned@1"]
    tests = {t["name"]: t for t in detail["tests"]}
    assert set(tests) == {"size"}  # `small` is opted out on soup
    assert tests["size"]["declared_on"] == "base" and tests["size"]["inherited"]
    assert detail["cascades"][0]["role"] == "replaced"
    assert detail["cascades"][0]["outcome"] == "blocked"
    assert detail["storage"]["logical_bytes"] > 0
    sentiment = snapshot.version_detail(demo, "sentiment@2", storage=storage)
    assert sentiment["loss_curve"][0] == [0.0, pytest.approx(0.86)]
    assert sentiment["metrics"]["train_loss"] == 0.163
    assert sentiment["provenance"]["previous"] == "sentiment@1"
    assert sorted(sentiment["derived"]) == [
        "sentiment-int8@2",
        "sentiment-pruned@2",
        "sentiment-small@2",
    ]
    actions = [(e["alias"], e["to_version"]) for e in sentiment["alias_history"]]
    assert ("champion", 2) in actions and ("previous", 1) in actions
    # Stored bytes are what each version added: together, the store's total.
    total = sum(v["stored_bytes"] for v in storage["versions"].values())
    assert total == storage["total"]["stored_bytes"]


def test_links_appear_only_for_configured_servers(
    demo: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL", "PREFECT_UI_URL"):
        monkeypatch.delenv(name, raising=False)
    assert snapshot.version_detail(demo, "sentiment@2")["links"] == []
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "file:///tmp/mlruns")  # no server: no link
    assert snapshot.version_detail(demo, "sentiment@2")["links"] == []
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000/")
    monkeypatch.setenv("PREFECT_API_URL", "http://prefect.internal:4200/api")
    found = {
        link["label"]: link["href"]
        for link in snapshot.version_detail(demo, "sentiment@2")["links"]
    }
    assert found["MLflow model version sentiment v2"] == (
        "http://mlflow.internal:5000/#/models/sentiment/versions/2"
    )
    assert found["Prefect: cascade base@2 (made and tested it)"] == (
        "http://prefect.internal:4200/runs/flow-run/6f1c2b1e-2d4a-4f7e-9a51-3f2d0c9b8e11"
    )
    assert links.prefect_ui_base(demo) == "http://prefect.internal:4200"
    monkeypatch.setenv("LINEAGE_UI_URL", "http://ui.internal:9000/")
    assert links.cascade_ui_url(3) == "http://ui.internal:9000/#/cascade/3"


def test_diff_groups_tensors_by_layer(demo: Workspace) -> None:
    diff = snapshot.version_diff(demo, "sentiment@1", "sentiment")
    assert (diff["a"], diff["b"]) == ("sentiment@1", "sentiment@2")
    layers = {layer["layer"]: layer for layer in diff["layers"]}
    assert list(layers) == ["embeddings", "layer.0"]
    assert [t["name"] for t in layers["layer.0"]["tensors"]] == ["layer.0.bias", "layer.0.weight"]
    assert layers["layer.0"]["changed"] == 1
    assert layers["layer.0"]["relative_l2"] == pytest.approx(
        next(t for t in layers["layer.0"]["tensors"] if t["changed"])["relative_l2"]
    )


@pytest.mark.parametrize(
    ("tensor", "layer"),
    [
        ("encoder.layer.3.attention.self.query.weight", "encoder.layer.3"),
        ("bert.encoder.layer.3.attention.self.query.weight", "bert.encoder.layer.3"),
        ("embeddings.word_embeddings.weight", "embeddings"),
        ("bert.embeddings.word_embeddings.weight", "bert.embeddings"),
        ("bert.pooler.dense.bias", "bert.pooler"),
        ("classifier.weight", "classifier"),
        ("pooler", "pooler"),
        ("model.layers.10.mlp.up_proj.weight", "model.layers.10"),
    ],
)
def test_layer_of(tensor: str, layer: str) -> None:
    assert snapshot.layer_of(tensor) == layer


def test_natural_order() -> None:
    names = ["l.10.w", "l.2.w", "l.1.w"]
    assert sorted(names, key=snapshot.natural_key) == ["l.1.w", "l.2.w", "l.10.w"]


def test_cascade_record_round_trip(workspace: Workspace, tiny_weights: Any) -> None:
    """On SQLite and PostgreSQL."""
    add(workspace, "base", source=tiny_weights(0))
    started = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    summary = {
        "upstream": "base@2",
        "replaces": "base@1",
        "flow_run_id": "abc",
        "levels": [["ft"]],
        "nodes": [
            {
                "model": "ft",
                "old_ref": "ft@1",
                "new_ref": "ft@2",
                "status": "promoted",
                "cached": True,
                "level": 0,
                "tests": {"passed": True, "total": 1, "failed": []},
                "aliases": ["champion"],
                "error": "",
                "warnings": [],
                "seconds": 1.5,
                "trace": [["derive", "began", 0.1]],
            }
        ],
        "counts": {"promoted": 1, "cached": 1},
    }
    first = record_cascade_run(workspace, summary, started_at=started)
    failed = {**summary, "counts": {"failed": 1}, "upstream": "base@3", "replaces": "base@2"}
    second = record_cascade_run(
        workspace,
        failed,
        started_at=started + timedelta(hours=1),
        finished_at=started + timedelta(hours=2),
    )
    records = list_cascade_runs(workspace)
    assert [r.id for r in records] == [second, first]  # newest first
    assert [r.status for r in records] == ["failed", "passed"]
    newest = records[0].to_dict()
    assert newest["started_at"] == "2026-05-01T13:00:00+00:00"
    assert newest["finished_at"] == "2026-05-01T14:00:00+00:00"
    node = records[1].nodes[0]
    assert "trace" not in node and node["cached"] is True and node["new_ref"] == "ft@2"
    assert records[1].flow_run_id == "abc" and records[1].levels == [["ft"]]


def test_an_older_workspace_has_no_cascades_until_one_runs(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    ws.close()
    downgrade(ws.graph.engine, "0001")  # as made by a lineage before cascade records
    ws.close()
    ws = Workspace.open(ws.root)  # upgraded when first used
    assert snapshot.build_snapshot(ws)["cascades"] == []
    record_cascade_run(
        ws,
        {"upstream": "a@2", "replaces": "a@1", "nodes": [], "counts": {}},
        started_at=datetime.now(UTC),
    )
    assert current_revision(ws.graph.engine) == head_revision()
    assert [r.upstream for r in list_cascade_runs(ws)] == ["a@2"]
    ws.close()


def test_snapshot_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    ws = build_demo_family(tmp_path, graph_url=postgres_url)
    snap = snapshot.build_snapshot(ws)
    assert snap["workspace"]["backend"] == "PostgreSQL"
    assert postgres_url not in json.dumps(snap)  # never the DB URL
    assert {s["status"] for s in snap["statuses"].values()} == {
        "passed",
        "failed",
        "blocked",
        "untested",
    }
    assert snapshot.version_detail(ws, "sentiment@2")["tests"][0]["latest"]["passed"]
    ws.close()


def _inline_parts(page: str) -> tuple[str, list[str], str]:
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert policy is not None
    scripts = re.findall(r"<script>(.*?)</script>", page, flags=re.S)
    style = re.search(r"<style>(.*?)</style>", page, flags=re.S)
    assert style is not None
    return policy.group(1), scripts, style.group(1)


def test_export_is_self_contained_and_locked_down(demo: Workspace) -> None:
    import base64
    import hashlib

    page = export_html(demo)
    policy, scripts, style = _inline_parts(page)
    assert len(scripts) == 2
    for text in [*scripts, style]:
        digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy
    assert "unsafe-inline" not in policy and "connect-src" not in policy
    assert 'src="' not in page.split("</head>")[1]  # nothing loaded from anywhere
    data = re.search(r'<script type="application/json" id="lineage-data">(.*?)</script>', page)
    assert data is not None
    embedded = json.loads(data.group(1))
    assert set(embedded["details"]) == {v.ref for v in demo.search()}
    assert embedded["snapshot"]["storage"]["total"]["logical_bytes"] > 0


def test_export_keeps_user_strings_inert(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    breakout = "</script><script>x()</script>"
    add(ws, "m", source=write_tiny_weights(tmp_path / "w", 0), message=breakout)
    page = export_html(ws)
    assert "</script><script>x()" not in page
    data = re.search(r'id="lineage-data">(.*?)</script>', page, flags=re.S)
    assert data is not None
    assert json.loads(data.group(1))["snapshot"]["versions"][0]["message"].startswith("</script>")
    ws.close()


def test_render_html_of_a_bare_graph_view() -> None:
    view = GraphView.from_dict(
        {
            "nodes": [
                {
                    "id": 1,
                    "ref": "a@1",
                    "model": "a",
                    "number": 1,
                    "kind": None,
                    "aliases": [],
                    "recipe": None,
                    "message": "",
                    "created_at": "2026-01-01T00:00:00+00:00",
                }
            ],
            "edges": [],
        }
    )
    page = html_from_graph(view.to_dict(), "t")
    assert page.startswith("<!DOCTYPE html>") and "<title>t</title>" in page
    data = re.search(r'id="lineage-data">(.*?)</script>', page, flags=re.S)
    assert data is not None
    assert json.loads(data.group(1))["snapshot"]["statuses"] is None


def test_snapshot_of_some_families(demo: Workspace) -> None:
    """`lineage ui topic`: only topic's family (what graph_data returns for it)."""
    snap = snapshot.build_snapshot(demo, ["topic"], statuses=False)
    refs = {v["ref"] for v in snap["versions"]}
    assert refs == {
        n["ref"] for n in graph_view(demo, ["topic"], all_versions=True).to_dict()["nodes"]
    }
    assert {"topic@1", "topic@2", "base@1", "base@2"} <= refs
    assert not any(ref.startswith("sentiment") for ref in refs)
    assert {m["name"] for m in snap["models"]} == {"base", "topic"}
    assert "statuses" not in snap
