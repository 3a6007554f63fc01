"""The derive task: re-run one node's recipe on its new parents and commit the result."""

from __future__ import annotations

import time
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from lineage.cascade.plan import PlanNode
from lineage.cascade.steps import derive_node, track_derive
from tasks.common import flow_run_id, open_workspace, retry_if_transient

RUNNERS = ("inline", "process", "docker")


def make_runner(name: str) -> Any:
    """The step runner for `--runner`: None runs the recipe in this process (inline);
    `process` and `docker` come from `tasks.runners`."""
    if name == "inline":
        return None
    if name not in RUNNERS:
        from lineage.errors import UsageError

        raise UsageError(f"unknown runner {name!r}; use one of {', '.join(RUNNERS)}")
    from tasks.runners import get_runner

    return get_runner(name)


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
) -> dict[str, Any]:
    """Derive `node` on `parent_refs` (or find it already derived); returns the
    outcome as a dict (new ref, version id, whether it came from the cache), and
    records the derive run in MLflow when `track` is set."""
    started = time.perf_counter()
    workspace = open_workspace(workspace_root)
    outcome = derive_node(workspace, node, parent_refs, runner=make_runner(runner), message=message)
    result = outcome.to_dict()
    result["warning"] = ""
    if track and not outcome.cached:
        result["warning"] = track_derive(
            workspace, outcome.new_ref, cascade_id=cascade_id, flow_run_id=flow_run_id()
        )
    result.update(seconds=time.perf_counter() - started, began=started, ended=time.perf_counter())
    return result
