"""The promotion flow on a real (temporary) Prefect server: a model that requires
approval pauses for input, and is promoted once a human approves it."""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Nothing may leak into ~/.prefect or phone home.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="lineage-test-prefect-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from lineage.ops.add import add
from lineage.ops.promote import set_model_policy
from lineage.workspace import Workspace

from .conftest import record_results


@pytest.fixture(scope="module")
def prefect_harness() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def _wait_for_state(flow_name: str, state: str, timeout: float = 90) -> Any:
    from prefect import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = [r for r in client.read_flow_runs() if r.name and r.state]
            for run in runs:
                if run.state.type.value == state and run.flow_id is not None:
                    flow = client.read_flow(run.flow_id)
                    if flow.name == flow_name:
                        return run
            time.sleep(0.5)
    raise AssertionError(f"no {flow_name} run reached {state} in {timeout}s")


def test_gated_promotion_waits_for_approval(
    prefect_harness: None, tmp_path: Path, tiny_weights: Any
) -> None:
    from prefect.flow_runs import resume_flow_run

    from flows.promotion import promote_flow

    ws = Workspace.init(tmp_path / "ws")
    add(ws, "gated", source=tiny_weights(0))
    record_results(ws, "gated@1")
    set_model_policy(ws, "gated", require_approval=True)

    outcome: dict[str, Any] = {}

    def run_flow() -> None:
        try:
            outcome["result"] = promote_flow(
                "gated@1", workspace_dir=str(ws.root), reason="release", approval_timeout_s=120
            )
        except BaseException as exc:  # reported by the main thread
            outcome["error"] = exc

    worker = threading.Thread(target=run_flow, daemon=True)
    worker.start()
    paused = _wait_for_state("lineage-promote", "PAUSED")
    assert ws.model("gated").aliases == {}  # nothing moves before approval
    resume_flow_run(paused.id, run_input={"approve": True, "approver": "alice", "note": ""})
    worker.join(timeout=120)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["result"]["to_version"] == 1
    assert ws.model("gated").aliases == {"champion": 1}
    assert ws.alias_history("gated")[-1].reason == "release (approved by alice)"
