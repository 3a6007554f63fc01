"""Warm step workers: pools of subprocesses or containers that run step after step.

- `base`: the `Worker` handle, the `WorkerPool` runner, `step_threads`, shared pools;
- `process`: workers as subprocesses (`ProcessPool`);
- `docker`: workers as long-lived locked-down containers (`DockerPool`).

The worker's own loop is `lineage.steps.worker`. `pool_for("process", slots=2)` gives
this process's shared pool of that kind (the cascade's tasks all draw on it).
"""

from __future__ import annotations

from typing import Any

from lineage.steps.pool.base import (
    Worker,
    WorkerPool,
    close_shared_pools,
    shared_pool,
    step_threads,
)
from lineage.steps.pool.process import ProcessPool

#: Runners that can keep warm workers (the inline runner is already warm).
POOLED_RUNNERS = ("process", "docker")

__all__ = [
    "POOLED_RUNNERS",
    "ProcessPool",
    "Worker",
    "WorkerPool",
    "close_shared_pools",
    "pool_for",
    "step_threads",
]


def new_pool(kind: str, slots: int = 1, **options: Any) -> WorkerPool:
    """A fresh pool of `kind` ("process" or "docker") with `slots` workers."""
    if kind == "process":
        return ProcessPool(slots, **options)
    if kind == "docker":
        from lineage.steps.pool.docker import DockerPool

        return DockerPool(slots, **options)
    raise ValueError(f"no warm workers for runner {kind!r}; use one of {POOLED_RUNNERS}")


def pool_for(kind: str, slots: int | None = None) -> WorkerPool:
    """This process's shared pool of `kind`, made with `slots` slots on first use
    (default 1); later calls get the same pool whatever they ask."""
    return shared_pool(kind, lambda n: new_pool(kind, n), slots)
