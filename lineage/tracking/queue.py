"""The durable local queue of MLflow records still to be written.

lineage's commands write the lineage DB and return; what MLflow should learn from
them (a version to register, a derive or test run, alias moves and their history) is
appended here as a small JSON job and written by the background writer
(`lineage.tracking.writer`). A slow or unreachable tracking server therefore slows
neither a command nor a cascade, and a crash loses nothing: a job is a file until
MLflow has it, and every job is idempotent, so replaying one twice is harmless.

Layout, under `.lineage/mlflow-queue/`:

    pending/<ns>-<pid>-<rand>.json   jobs, oldest first (written to tmp/, fsynced, renamed)
    failed/                          jobs MLflow refused `MAX_ATTEMPTS` times (kept, reported)
    writer.lock                      held by the one background writer of the workspace
    mirror.lock                      held around each unit of MLflow writes (one job, one
                                     atomic promotion), so version numbers never cross
    writer.log                       what background writers said

Jobs name versions by id and carry only what the lineage DB does not keep (the
cascade and Prefect flow run of a step, a test run's outcomes); everything else is
read from the DB when the job runs, so MLflow always mirrors what lineage holds.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lineage.tracking.backend import file_lock

if TYPE_CHECKING:
    from lineage.workspace import Workspace

QUEUE_DIR = "mlflow-queue"
#: A job MLflow refused this many times moves to failed/ (reported by `lineage sync mlflow`).
MAX_ATTEMPTS = 5

#: version: register it (a derive run when a recipe made it); derive: its derive run,
#: tagged with `context`; tests: a test run of `outcomes`; aliases: the model's aliases
#: and alias history.
JobKind = Literal["version", "derive", "tests", "aliases"]
JOB_KINDS: tuple[str, ...] = ("version", "derive", "tests", "aliases")


@dataclass(frozen=True)
class Job:
    """One MLflow record to write."""

    kind: JobKind
    model: str
    version_id: int | None = None
    context: dict[str, str] = field(default_factory=dict)
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 0
    last_error: str = ""
    name: str = ""  # the file name once queued

    def to_json(self) -> str:
        data = asdict(self)
        data.pop("name")
        return json.dumps(data, sort_keys=True, default=str)

    @classmethod
    def from_file(cls, path: Path) -> Job:
        data = json.loads(path.read_text())
        if data.get("kind") not in JOB_KINDS:
            raise ValueError(f"unknown job kind {data.get('kind')!r}")
        return cls(
            kind=data["kind"],
            model=str(data["model"]),
            version_id=None if data.get("version_id") is None else int(data["version_id"]),
            context={str(k): str(v) for k, v in (data.get("context") or {}).items()},
            outcomes=list(data.get("outcomes") or []),
            attempts=int(data.get("attempts") or 0),
            last_error=str(data.get("last_error") or ""),
            name=path.name,
        )


def queue_dir(workspace: Workspace) -> Path:
    return workspace.lineage_dir / QUEUE_DIR


def _pending_dir(workspace: Workspace) -> Path:
    return queue_dir(workspace) / "pending"


def failed_dir(workspace: Workspace) -> Path:
    return queue_dir(workspace) / "failed"


def _write_durably(path: Path, text: str, tmp_dir: Path) -> None:
    """Write `text` to `path` so that it is either absent or complete after a crash."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir / f"{path.name}.{secrets.token_hex(4)}.tmp"
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def enqueue(workspace: Workspace, job: Job) -> Path:
    """Append `job` durably; returns its file."""
    name = f"{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(3)}.json"
    path = _pending_dir(workspace) / name
    _write_durably(path, job.to_json(), queue_dir(workspace) / "tmp")
    return path


def pending(workspace: Workspace) -> list[Job]:
    """The queued jobs, oldest first (a file another writer just finished is skipped)."""
    folder = _pending_dir(workspace)
    if not folder.is_dir():
        return []
    jobs = []
    for path in sorted(folder.glob("*.json")):
        try:
            jobs.append(Job.from_file(path))
        except FileNotFoundError:
            continue
        except (ValueError, KeyError, TypeError):
            # Not a job this version of lineage can read: keep it, out of the way.
            _move_to_failed(workspace, path)
    return jobs


def has_pending(workspace: Workspace) -> bool:
    folder = _pending_dir(workspace)
    return folder.is_dir() and any(folder.glob("*.json"))


def done(workspace: Workspace, job: Job) -> None:
    """MLflow has `job`: drop it."""
    (_pending_dir(workspace) / job.name).unlink(missing_ok=True)


def failed(workspace: Workspace, job: Job, error: str) -> Job:
    """Count a failed attempt; after `MAX_ATTEMPTS`, move the job to failed/."""
    updated = replace(job, attempts=job.attempts + 1, last_error=error)
    path = _pending_dir(workspace) / job.name
    if not path.exists():
        return updated
    _write_durably(path, updated.to_json(), queue_dir(workspace) / "tmp")
    if updated.attempts >= MAX_ATTEMPTS:
        _move_to_failed(workspace, path)
    return updated


def _move_to_failed(workspace: Workspace, path: Path) -> None:
    target = failed_dir(workspace)
    target.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.replace(path, target / path.name)


def failed_jobs(workspace: Workspace) -> list[Job]:
    folder = failed_dir(workspace)
    jobs = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        with contextlib.suppress(ValueError, KeyError, TypeError, FileNotFoundError):
            jobs.append(Job.from_file(path))
    return jobs


def retry_failed(workspace: Workspace) -> int:
    """Put the jobs of failed/ back in the queue with a fresh count (`sync --retry-failed`)."""
    count = 0
    for job in failed_jobs(workspace):
        enqueue(workspace, replace(job, attempts=0, last_error=""))
        (failed_dir(workspace) / job.name).unlink(missing_ok=True)
        count += 1
    return count


# ---------------------------------------------------------------------- locks
_held = threading.local()


@contextlib.contextmanager
def mirror_lock(workspace: Workspace) -> Iterator[None]:
    """Held around each unit of MLflow writes of the workspace (re-entrant per thread).

    It keeps two writers from registering versions of one model at once (MLflow numbers
    a new version max+1, so a race would cross numbers) and keeps the background writer
    from re-reading aliases while a promotion moves them.
    """
    path = queue_dir(workspace) / "mirror.lock"
    held: dict[str, int] = getattr(_held, "paths", None) or {}
    _held.paths = held
    key = str(path)
    if held.get(key):
        held[key] += 1
        try:
            yield
        finally:
            held[key] -= 1
        return
    with file_lock(path):
        held[key] = 1
        try:
            yield
        finally:
            held[key] = 0


def writer_lock(workspace: Workspace, *, blocking: bool) -> contextlib.AbstractContextManager[bool]:
    """Held by the one writer draining the queue; yields whether it was acquired."""
    return file_lock(queue_dir(workspace) / "writer.lock", blocking=blocking)


# ---------------------------------------------------------------------- job builders
def version_job(model: str, version_id: int) -> Job:
    return Job("version", model, version_id)


def derive_job(model: str, version_id: int, context: Mapping[str, str]) -> Job:
    return Job("derive", model, version_id, context=dict(context))


def tests_job(
    model: str, version_id: int, outcomes: Sequence[Mapping[str, Any]], context: Mapping[str, str]
) -> Job:
    return Job(
        "tests", model, version_id, context=dict(context), outcomes=[dict(o) for o in outcomes]
    )


def aliases_job(model: str) -> Job:
    return Job("aliases", model)
