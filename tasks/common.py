"""What the cascade's Prefect tasks share: opening the workspace, retries, run context."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from lineage.cascade.steps import is_transient

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
