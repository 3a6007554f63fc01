"""Which Prefect task runner runs a cascade's tasks: checked here, without Prefect, so
the CLI refuses a bad choice before anything starts.

>>> resolve_task_runner("thread")
'thread'
>>> resolve_task_runner("dask", dask_address="tcp://scheduler:8786")
'dask'
"""

from __future__ import annotations

import os

from lineage.errors import UsageError
from lineage.extras import require_extra

#: What runs the cascade's tasks: a thread pool in the flow's process, or a Dask cluster.
TASK_RUNNERS = ("thread", "dask")
#: Worker processes of the local Dask cluster made when no scheduler address is given.
DEFAULT_DASK_WORKERS = 2


def resolve_task_runner(
    kind: str | None = None, dask_address: str | None = None, dask_workers: int | None = None
) -> str:
    """The task runner to use: `kind`, else $LINEAGE_TASK_RUNNER, else `dask` when a
    scheduler address is known (`dask_address` or $LINEAGE_DASK_ADDRESS), else `thread`.

    Raises:
        UsageError: an unknown kind, Dask options without Dask, or a malformed address.
    """
    address = dask_address or os.environ.get("LINEAGE_DASK_ADDRESS") or ""
    chosen = kind or os.environ.get("LINEAGE_TASK_RUNNER") or ("dask" if address else "thread")
    if chosen not in TASK_RUNNERS:
        raise UsageError(f"unknown task runner {chosen!r}; use one of {', '.join(TASK_RUNNERS)}")
    if chosen != "dask" and (dask_address or dask_workers):
        raise UsageError("--dask-address and --dask-workers need --task-runner dask")
    if dask_address and dask_workers:
        raise UsageError("--dask-workers sizes a local cluster; not with --dask-address")
    if dask_workers is not None and dask_workers < 1:
        raise UsageError(f"--dask-workers must be at least 1 (got {dask_workers})")
    if address and "://" not in address:
        raise UsageError(f"Dask scheduler address {address!r}: expected tcp://HOST:PORT")
    if chosen == "dask":
        require_extra("dask", "the Dask task runner")
    return chosen


def dask_workers_default() -> int:
    """$LINEAGE_DASK_WORKERS, else `DEFAULT_DASK_WORKERS`."""
    value = os.environ.get("LINEAGE_DASK_WORKERS") or str(DEFAULT_DASK_WORKERS)
    if not value.isdigit() or int(value) < 1:
        raise UsageError(f"LINEAGE_DASK_WORKERS={value!r}: expected a positive integer")
    return int(value)
