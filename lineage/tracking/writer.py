"""The background writer: drains the MLflow queue of a workspace.

`wake(workspace)` is called after each job is queued. What it does depends on
`$LINEAGE_MLFLOW_WRITER`:

- `background` (default): start `python -m lineage.tracking.writer ROOT`, a detached,
  low-priority process, unless one is already draining this workspace (it holds
  `writer.lock`, and re-checks the queue after releasing it, so no job is stranded);
  the command that queued the job returns at once;
- `deferred`: nothing; records wait for `lineage sync mlflow` (or the next background
  writer). Useful in CI jobs and test suites that look at MLflow only at the end;
- `inline`: drain now, in this process (MLflow is in step when the command returns;
  a failure raises `TrackingError`, and the records stay queued).

A job that MLflow refuses is retried by later drains and moved aside after
`queue.MAX_ATTEMPTS` tries (`lineage sync mlflow` reports it); an unreachable server
costs no attempts. `lineage sync mlflow` drains in the foreground and then checks
everything (see `sync.py`).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lineage.errors import LineageError, TrackingError, UsageError
from lineage.tracking import queue

if TYPE_CHECKING:
    from lineage.workspace import Workspace

MODE_ENV = "LINEAGE_MLFLOW_WRITER"
MODES = ("background", "deferred", "inline")
#: Pauses of a background writer between drains while jobs keep failing (then it exits;
#: the next queued job or `lineage sync mlflow` tries again).
RETRY_DELAYS_S = (2.0, 10.0, 30.0)
#: writer.log is cut back when it grows past this size.
LOG_LIMIT_BYTES = 1_000_000

_children: list[subprocess.Popen[bytes]] = []


def writer_mode() -> str:
    mode = os.environ.get(MODE_ENV, "").strip().lower() or "background"
    if mode not in MODES:
        raise UsageError(f"{MODE_ENV}={mode!r}: expected one of {', '.join(MODES)}")
    return mode


@dataclass
class DrainReport:
    """What one drain wrote, and what is left."""

    written: int = 0
    remaining: int = 0
    error: str = ""
    moved_aside: list[str] = field(default_factory=list)


def _merged(jobs: list[queue.Job]) -> list[list[queue.Job]]:
    """Jobs grouped so that one write serves several: version/derive jobs of one
    version (their contexts merged) and alias jobs of one model; test jobs stay apart
    (each is one test run)."""
    groups: dict[tuple[str, str, int | None], list[queue.Job]] = {}
    order: list[tuple[str, str, int | None]] = []
    for job in jobs:
        if job.kind == "tests":
            key = (job.name, job.model, job.version_id)
        elif job.kind == "aliases":
            key = ("aliases", job.model, None)
        else:
            key = ("version", job.model, job.version_id)
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(job)
    return [groups[key] for key in order]


def _combined(group: list[queue.Job]) -> queue.Job:
    first = group[0]
    if len(group) == 1:
        return first
    context: dict[str, str] = {}
    for job in group:
        context.update({k: v for k, v in job.context.items() if v})
    kind = "derive" if any(job.kind == "derive" for job in group) else first.kind
    return queue.Job(kind, first.model, first.version_id, context=context, name=first.name)


def drain(workspace: Workspace) -> DrainReport:
    """Write every queued job now (waiting for a background writer to finish first)."""
    with queue.writer_lock(workspace, blocking=True):
        return drain_locked(workspace)


def drain_locked(workspace: Workspace) -> DrainReport:
    """`drain` for a caller that holds the writer lock. Stops at the first failure."""
    from lineage.tracking.backend import init_tracking, mlflow_session
    from lineage.tracking.mirror import apply_job

    report = DrainReport()
    jobs = queue.pending(workspace)
    if not jobs:
        return report
    try:
        init_tracking(workspace)  # an unreachable server is nobody's fault: no attempt used
    except LineageError as exc:
        report.error = str(exc)
        report.remaining = len(jobs)
        return report
    while jobs:
        for group in _merged(jobs):
            job = _combined(group)
            try:
                with queue.mirror_lock(workspace), mlflow_session(workspace) as client:
                    apply_job(client, workspace, job)
            except Exception as exc:
                message = _one_line(exc)
                for member in group:
                    updated = queue.failed(workspace, member, message)
                    if updated.attempts >= queue.MAX_ATTEMPTS:
                        report.moved_aside.append(member.name)
                report.error = message
                report.remaining = len(queue.pending(workspace))
                return report
            for member in group:
                queue.done(workspace, member)
            report.written += len(group)
        jobs = queue.pending(workspace)
    return report


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    if isinstance(exc, LineageError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def wake(workspace: Workspace) -> None:
    """A job was queued: have it written according to `$LINEAGE_MLFLOW_WRITER`."""
    mode = writer_mode()
    if mode == "deferred":
        return
    if mode == "inline":
        report = drain(workspace)
        if report.error:
            raise TrackingError(
                f"{report.error} ({report.remaining} MLflow record(s) still queued; "
                "`lineage sync mlflow` writes them)"
            )
        return
    _reap()
    with queue.writer_lock(workspace, blocking=False) as free:
        if not free:
            return  # a writer is draining; it re-checks the queue after it lets go
    start_background_writer(workspace)


def start_background_writer(workspace: Workspace) -> None:
    """Start a detached writer process for `workspace` (it exits when the queue is
    empty, or another writer holds the lock)."""
    folder = queue.queue_dir(workspace)
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / "writer.log"
    with contextlib.suppress(OSError):
        if log_path.stat().st_size > LOG_LIMIT_BYTES:
            log_path.unlink()
    with open(log_path, "ab") as log:
        child = subprocess.Popen(
            [sys.executable, "-P", "-m", "lineage.tracking.writer", str(workspace.root)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # not killed with the terminal's process group
            close_fds=True,
        )
    _children.append(child)


def _reap() -> None:
    """Collect finished writers started by this (long-lived, e.g. a flow) process."""
    _children[:] = [child for child in _children if child.poll() is None]


def run_background(root: str) -> int:
    """The background writer's main loop: drain until the queue stays empty."""
    from lineage.workspace import Workspace

    with contextlib.suppress(OSError):
        os.nice(10)  # behind the commands and cascades it serves
    try:
        workspace = Workspace.open(root)
    except LineageError:
        return 0  # the workspace went away (a deleted scratch workspace): nothing to do
    delays = iter(RETRY_DELAYS_S)
    try:
        while True:
            with queue.writer_lock(workspace, blocking=False) as got:
                if not got:
                    return 0
                report = drain_locked(workspace)
            if report.error:
                stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
                print(f"{stamp} {report.remaining} queued: {report.error}", file=sys.stderr)
            # Jobs queued while we held the lock were left to us: look again.
            if not queue.has_pending(workspace):
                return 0
            if report.error:
                delay = next(delays, None)
                if delay is None:
                    return 1
                time.sleep(delay)
    finally:
        workspace.close()


if __name__ == "__main__":
    sys.exit(run_background(sys.argv[1]))
