"""The test task: run a new version's own and inherited tests."""

from __future__ import annotations

import time

from prefect import task
from prefect.cache_policies import NO_CACHE

from lineage.cascade.node import NodeTests, test_node, track_tests
from tasks.common import Timed, flow_run_id, open_workspace, retry_if_transient


@task(
    name="test",
    retries=2,
    retry_delay_seconds=[1, 5],
    retry_condition_fn=retry_if_transient,
    cache_policy=NO_CACHE,
)
def test_task(
    workspace_root: str, ref: str, track: bool = True, cascade_id: str = ""
) -> Timed[NodeTests]:
    """Run the tests of `ref`; results are stored per version and, when `track` is set,
    recorded as an MLflow run."""
    began = time.perf_counter()
    workspace = open_workspace(workspace_root)
    tests = test_node(workspace, ref)
    warning = ""
    if track:
        warning = track_tests(workspace, ref, cascade_id=cascade_id, flow_run_id=flow_run_id())
    return Timed(tests, began, time.perf_counter(), warning)
