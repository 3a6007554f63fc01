"""The test task: run a new version's own and inherited tests, then gate it."""

from __future__ import annotations

import time
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from lineage.cascade.steps import gate_node, test_node, track_tests
from tasks.common import flow_run_id, open_workspace, retry_if_transient


@task(
    name="test",
    retries=2,
    retry_delay_seconds=[1, 5],
    retry_condition_fn=retry_if_transient,
    cache_policy=NO_CACHE,
)
def test_task(
    workspace_root: str, ref: str, track: bool = True, cascade_id: str = ""
) -> dict[str, Any]:
    """Run the tests of `ref`; results are stored per version by `run_tests` and, when
    `track` is set, recorded as an MLflow run."""
    started = time.perf_counter()
    workspace = open_workspace(workspace_root)
    result = test_node(workspace, ref).to_dict()
    result["warning"] = ""
    if track:
        result["warning"] = track_tests(
            workspace, ref, cascade_id=cascade_id, flow_run_id=flow_run_id()
        )
    result.update(seconds=time.perf_counter() - started, began=started, ended=time.perf_counter())
    return result


@task(
    name="gate",
    retries=2,
    retry_delay_seconds=[1, 5],
    retry_condition_fn=retry_if_transient,
    cache_policy=NO_CACHE,
)
def gate_task(
    workspace_root: str, ref: str, passed: bool, reason: str, track: bool = True
) -> dict[str, Any]:
    """Move `candidate` (and `champion` for auto-promoting models) to `ref` on a pass."""
    started = time.perf_counter()
    result = gate_node(
        open_workspace(workspace_root), ref, passed, reason=reason, track=track
    ).to_dict()
    result.update(seconds=time.perf_counter() - started, began=started, ended=time.perf_counter())
    return result
