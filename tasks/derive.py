"""The derive task: re-run one node's recipe on its new parents and commit the result."""

from __future__ import annotations

import time

from prefect import task
from prefect.cache_policies import NO_CACHE

from lineage.cascade.node import DeriveOutcome, derive_node, track_derive
from lineage.cascade.plan import PlanNode
from lineage.steps.runners import get_runner
from tasks.common import Timed, flow_run_id, open_workspace, retry_if_transient


# Our own derive cache makes the task idempotent; Prefect's input hashing would only
# cost time, hence NO_CACHE. No tags: each tag costs a concurrency-slot API call per
# task run (see flows/cascade.py).
@task(
    name="derive",
    retries=2,
    retry_delay_seconds=[1, 5],
    retry_condition_fn=retry_if_transient,
    cache_policy=NO_CACHE,
)
def derive_task(
    workspace_root: str,
    node: PlanNode,
    parent_refs: list[str],
    runner: str = "process",
    message: str = "",
    track: bool = True,
    cascade_id: str = "",
) -> Timed[DeriveOutcome]:
    """Derive `node` on `parent_refs` (or find it already derived), and record the
    derive run in MLflow when `track` is set."""
    began = time.perf_counter()
    workspace = open_workspace(workspace_root)
    outcome = derive_node(workspace, node, parent_refs, runner=get_runner(runner), message=message)
    warning = ""
    if track and not outcome.cached:
        warning = track_derive(
            workspace, outcome.new_ref, cascade_id=cascade_id, flow_run_id=flow_run_id()
        )
    return Timed(outcome, began, time.perf_counter(), warning)
