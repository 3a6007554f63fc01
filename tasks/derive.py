"""The derive task: re-run one node's recipe on its new parents, commit the result, and
(in the same step) run the node's tests on it."""

from __future__ import annotations

import contextlib
import time

from prefect import task
from prefect.cache_policies import NO_CACHE

from lineage.cascade.headstart import children_starter
from lineage.cascade.node import DeriveOutcome, derive_node, track_derive, track_tests
from lineage.cascade.plan import PlanNode
from lineage.steps.pool import WorkerPool, runner_for
from tasks.common import Timed, flow_run_id, open_workspace, retry_if_transient


def announced_as(cascade_id: str, model: str) -> str:
    """The key a cascade announces a node's step under (`WorkerPool.expect`) before it
    submits the node's derive task, which claims it."""
    return f"{cascade_id}/{model}"


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
    warm: bool = True,
    threads: int | None = None,
    priority: float = 0.0,
) -> Timed[DeriveOutcome]:
    """Derive `node` on `parent_refs` (or find it already derived) and test the new
    version in the same step; record the runs in MLflow when `track` is set.

    `warm` runs the step on this process's warm worker pool of `runner` (process or
    docker), else in a fresh process or container; `threads` is each step's torch
    thread count (recorded with the version); a step of a higher `priority` (the
    cascade's estimated work below the node) gets the next free warm worker first."""
    began = time.perf_counter()
    workspace = open_workspace(workspace_root)
    step_runner = runner_for(runner, warm=warm, threads=threads)
    with (
        step_runner.prioritized(priority, announced_as(cascade_id, node.model))
        if isinstance(step_runner, WorkerPool)
        else contextlib.nullcontext()
    ):
        outcome = derive_node(
            workspace,
            node,
            parent_refs,
            runner=step_runner,
            message=message,
            on_step_done=children_starter(node.model),
        )
    warnings = []
    if track and not outcome.cached:
        run_id = flow_run_id()
        warnings.append(
            track_derive(workspace, outcome.new_ref, cascade_id=cascade_id, flow_run_id=run_id)
        )
        if outcome.tests is not None:
            warnings.append(
                track_tests(workspace, outcome.new_ref, cascade_id=cascade_id, flow_run_id=run_id)
            )
    return Timed(outcome, began, time.perf_counter(), "; ".join(filter(None, warnings)))
