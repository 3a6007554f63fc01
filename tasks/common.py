"""What the cascade's Prefect tasks share: opening the workspace, retries, run context,
and the envelope that carries a task's typed outcome with its timing."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from lineage.cascade.node import is_transient

if TYPE_CHECKING:
    from lineage.workspace import Workspace

T = TypeVar("T")

_workspaces: dict[str, Workspace] = {}
_lock = threading.Lock()


@dataclass
class Timed(Generic[T]):
    """A task's outcome, when it began and ended (perf_counter, the flow's clock when
    tasks run in its process), and a one-line warning (e.g. MLflow unreachable)."""

    value: T
    began: float
    ended: float
    warning: str = ""

    @property
    def seconds(self) -> float:
        return self.ended - self.began


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
    from prefect.runtime import flow_run

    value = flow_run.id
    return str(value) if value else None
