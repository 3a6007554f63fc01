"""What a cascade reports on a real Prefect server: artifacts the open-source UI renders
(no Mermaid), a link to the lineage graph, `lineage.cascade.node.failed` events, the
warm workers and the API it used (nothing started when one is configured)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from cascade_helpers import VENV_BIN, build_family, child_env

from lineage.workspace import Workspace

pytestmark = pytest.mark.timeout(240)


def _client(api_url: str) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}):
        return get_client(sync_client=True)


def _failed_events(client: Any, flow_run_id: str, timeout_s: float = 60) -> list[Any]:
    from prefect.events.filters import EventFilter, EventNameFilter

    deadline = time.monotonic() + timeout_s
    while True:  # events are sent in the background and stored by the server later
        page = client.read_events(
            EventFilter(event=EventNameFilter(name=["lineage.cascade.node.failed"])), limit=50
        )
        found = [e for e in page.events if e.payload.get("flow_run_id") == flow_run_id]
        if len(found) >= 2 or time.monotonic() > deadline:
            return found
        time.sleep(1)


def test_artifacts_events_and_workers_of_a_cascade(prefect_server: str, tmp_path: Path) -> None:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    ws = Workspace.init(tmp_path / "ws")
    build_family(ws, tmp_path / "weights")
    # A process of its own, as a user runs it: one API for the whole process (the
    # toy recipes are found where a user's would be, on PYTHONPATH).
    done = subprocess.run(
        [str(VENV_BIN / "lineage"), "cascade", "base@2", "--runner", "process",
         "--concurrency", "2", "--retries", "0", "--no-track", "--json"],
        env=child_env(prefect_server),
        cwd=ws.root,
        capture_output=True,
        text=True,
        timeout=180,
    )  # fmt: skip
    assert done.returncode == 12, done.stderr[-3000:]  # broken and tight failed
    summary = json.loads(done.stdout)
    client = _client(prefect_server)
    artifacts = client.read_artifacts(
        artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[summary["flow_run_id"]])
        )
    )
    events = _failed_events(client, summary["flow_run_id"])

    # A configured API: used as it is, nothing started.
    assert summary["prefect"] == {"api_url": prefect_server, "ephemeral": False, "startup_s": 0.0}
    # Steps ran on two warm workers, one thread each on this machine's cores or fewer.
    workers = summary["workers"]
    assert workers["runner"] == "process" and workers["warm"] and workers["slots"] == 2
    assert workers["threads"] >= 1
    nodes = {n["model"]: n for n in summary["nodes"]}
    assert nodes["merged"]["parents"] == ["ft@2", "side@1"]
    assert nodes["ft"]["threads"] == workers["threads"]
    # Tests ran in the derive step: no node needed a test task.
    assert all(stage != "test" for n in nodes.values() for stage, _, _ in n["trace"])
    assert nodes["tight"]["tests"] == {"passed": False, "total": 2, "failed": ["tiny-budget"]}

    by_key = {a.key: a for a in artifacts}
    assert {"table", "markdown", "progress"} <= {a.type for a in artifacts}
    table = {row["node"]: row for row in json.loads(by_key["base-2-cascade-summary"].data)}
    assert table["merged"]["parents"] == "ft@2, side@1"
    assert table["broken-child"]["parents"] == "broken@next"
    assert table["broken-child"]["outcome"] == "blocked"
    report = by_key["base-2-cascade-lineage"].data
    assert "mermaid" not in report and "| broken | " in report
    # Prefect stores a link artifact as Markdown: [text](url).
    link = by_key["base-2-cascade-graph"].data
    url = link[link.index("](") + 2 : -1]
    assert url.startswith("file://") and url.endswith(".html")
    assert Path(url.removeprefix("file://")).read_text().startswith("<!DOCTYPE html>")

    # `broken` failed its derive and `tight` its tests: one event each, for automations.
    failed = {e.payload["model"]: e for e in events}
    assert set(failed) == {"broken", "tight"}
    assert failed["broken"].payload["blocked"] == ["broken-child"]
    assert failed["broken"].resource["prefect.resource.id"] == "lineage.model.broken"
    assert "tiny-budget" in failed["tight"].payload["error"]


def test_the_local_server_starts_once_per_process(
    tmp_path: Path, toy_path: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cascade_helpers import provenance

    from flows.cascade import run_cascade
    from lineage.ops.add import add, commit
    from lineage.ops.code import trust
    from lineage.ops.tests import declare_model_test
    from lineage.testing import write_tiny_weights

    monkeypatch.delenv("PREFECT_API_URL", raising=False)  # no API: the local server
    ws = Workspace.init(tmp_path / "ws")
    trust(ws, "toy_recipes")
    add(ws, "base", source=write_tiny_weights(tmp_path / "w0", 0))
    add(ws, "ft", source=write_tiny_weights(tmp_path / "w1", 1), parents=["base@1"],
        kind="finetune", provenance=provenance("scale", factor=0.5))  # fmt: skip
    declare_model_test(ws, "base", "small-enough", "size", {"max_params": 100_000})
    commit(ws, "base", source=write_tiny_weights(tmp_path / "w2", 2))
    commit(ws, "base", source=write_tiny_weights(tmp_path / "w3", 3))
    first = run_cascade("base@2", workspace=str(ws.root), runner="inline", track=False)
    second = run_cascade("base@3", workspace=str(ws.root), runner="inline", track=False)
    assert first["prefect"]["ephemeral"] and first["prefect"]["startup_s"] >= 0
    # Started (at most) once: the second cascade found it running.
    assert second["prefect"]["api_url"] == first["prefect"]["api_url"]
    assert second["prefect"]["startup_s"] == 0.0
    assert [n["status"] for n in second["nodes"]] == ["promoted"]


def test_a_local_server_that_cannot_start_is_one_error_line(tmp_path: Path) -> None:
    # uvicorn exits 3 for a taken port and for an app that fails to start alike: a
    # broken database is reported at once, not retried, with the server's own words.
    from lineage.testing import one_error_line, run_cli, write_tiny_weights

    run_cli(["init", "ws", "--no-tracking"], tmp_path)
    ws = tmp_path / "ws"
    run_cli(["add", "base", "--from", str(write_tiny_weights(tmp_path / "w0", 0))], ws)
    run_cli(["commit", "base", "--from", str(write_tiny_weights(tmp_path / "w1", 1))], ws)
    broken = f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'dir' / 'prefect.db'}"
    done = run_cli(
        ["cascade", "base@2", "--runner", "inline", "--no-track"],
        ws,
        check=False,
        env={"PREFECT_API_URL": "", "PREFECT_API_DATABASE_CONNECTION_URL": broken},
        timeout=120,
    )
    assert done.returncode != 0
    line = one_error_line(done)
    assert "local Prefect server exited (3) while starting" in line, line
    assert "unable to open database file" in line
    log = Path(line.rsplit("(its log: ", 1)[1].rstrip(")"))
    assert "Application startup failed" in log.read_text()
    log.unlink()
