"""What the cascade's Prefect tasks share: opening the workspace, retries, run context,
and the choice of task runner (importable without Prefect, for the CLI's checks)."""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

from lineage.cascade.steps import is_transient
from lineage.errors import UsageError

if TYPE_CHECKING:
    from lineage.workspace import Workspace

_workspaces: dict[str, Workspace] = {}
_lock = threading.Lock()


def open_workspace(root: str) -> Workspace:
    """One `Workspace` per root and process: task threads share its engine, which is
    thread-safe, instead of re-reading the config for every task run."""
    from lineage.workspace import Workspace

    with _lock:
        workspace = _workspaces.get(root)
        if workspace is None:
            workspace = Workspace.open(root)
            _workspaces[root] = workspace
        return workspace


def retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry a busy DB or a dead container, never a bad
    recipe or bad params (those fail the same way every time)."""
    error = state.data if isinstance(state.data, BaseException) else None
    if error is None:
        try:
            state.result(raise_on_failure=True)
        except BaseException as exc:
            error = exc
    return error is None or is_transient(error)


def flow_run_id() -> str | None:
    """The id of the Prefect flow run this code runs in, if any (for tracking)."""
    try:
        from prefect.runtime import flow_run
    except ImportError:
        return None
    value = flow_run.id
    return str(value) if value else None


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
    return chosen


def dask_workers_default() -> int:
    """$LINEAGE_DASK_WORKERS, else `DEFAULT_DASK_WORKERS`."""
    value = os.environ.get("LINEAGE_DASK_WORKERS") or str(DEFAULT_DASK_WORKERS)
    if not value.isdigit() or int(value) < 1:
        raise UsageError(f"LINEAGE_DASK_WORKERS={value!r}: expected a positive integer")
    return int(value)
