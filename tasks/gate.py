"""The gate task: move `candidate` (and `champion`) to a version whose tests passed."""

from __future__ import annotations

import time

from prefect import task
from prefect.cache_policies import NO_CACHE

from lineage.cascade.node import gate_node
from lineage.ops.promote import GateOutcome
from tasks.common import Timed, open_workspace, retry_if_transient


@task(
    name="gate",
    retries=2,
    retry_delay_seconds=[1, 5],
    retry_condition_fn=retry_if_transient,
    cache_policy=NO_CACHE,
)
def gate_task(
    workspace_root: str, ref: str, passed: bool, reason: str, track: bool = True
) -> Timed[GateOutcome]:
    """Gate `ref` by the promotion rule (`lineage.ops.promote.gate`)."""
    began = time.perf_counter()
    outcome = gate_node(open_workspace(workspace_root), ref, passed, reason=reason, track=track)
    return Timed(outcome, began, time.perf_counter())
