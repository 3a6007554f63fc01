"""Warm step workers: pools of subprocesses or containers that run step after step.

- `base`: the `Worker` handle, the `WorkerPool` runner, `step_threads`, shared pools;
- `process`: workers as subprocesses (`ProcessPool`);
- `docker`: workers as long-lived locked-down containers (`DockerPool`).

The worker's own loop is `lineage.steps.worker`. `pool_for("process", slots=2)` gives
this process's shared pool of that kind (the cascade's tasks all draw on it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lineage.steps.pool.base import (
    Worker,
    WorkerPool,
    close_shared_pools,
    shared_pool,
    step_threads,
)
from lineage.steps.pool.process import ProcessPool

if TYPE_CHECKING:
    from lineage.steps.runners import Runner

#: Runners that can keep warm workers (the inline runner is already warm).
POOLED_RUNNERS = ("process", "docker")

__all__ = [
    "POOLED_RUNNERS",
    "ProcessPool",
    "Worker",
    "WorkerPool",
    "close_shared_pools",
    "pool_for",
    "runner_for",
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


def pool_for(kind: str, slots: int | None = None, threads: int | None = None) -> WorkerPool:
    """This process's shared pool of `kind`, made with `slots` slots (default 1) and
    `threads` per step on first use; later calls get the same pool whatever they ask."""
    return shared_pool(kind, lambda n: new_pool(kind, n, threads=threads), slots)


def runner_for(
    name: str, *, warm: bool = True, slots: int | None = None, threads: int | None = None
) -> Runner:
    """Where a cascade's steps run: this process's warm pool of `name` when `warm` and
    the runner has one (process, docker), else a one-shot runner; either way with
    `threads` per step.

    >>> runner_for("inline").name, runner_for("process", warm=False).name
    ('inline', 'process')
    """
    from lineage.steps.runners import get_runner

    if warm and name in POOLED_RUNNERS:
        return pool_for(name, slots, threads)
    return get_runner(name, threads=threads)
