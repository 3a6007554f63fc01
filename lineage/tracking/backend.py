"""Where a workspace's MLflow lives, and how lineage talks to it.

Embedded default: MLflow's SQLite store and artifact folder inside the workspace,
`.lineage/mlflow/mlflow.db` and `.lineage/mlflow/artifacts/`. A tracking server is
used instead when `$MLFLOW_TRACKING_URI` or the workspace config
(`[mlflow] tracking_uri`) names one; lineage then behaves the same.

The embedded store is created lazily, on first use (`lineage init` does not touch
MLflow, so it stays fast): a fresh MLflow SQLite DB takes seconds of alembic
migrations, and several processes migrating the same new DB at once fail. So the
migration runs under a file lock, on a per-user template that is then copied into
each new workspace (later workspaces cost a file copy, not a migration).

Every MLflow call goes through `mlflow_session(workspace)`, which yields an
`MlflowClient` bound to the workspace's URI and turns any MLflow or network failure
into one `TrackingError` line. lineage never sets MLflow's process-wide tracking URI
and uses no fluent API (`mlflow.start_run`, `mlflow.log_*`): every call names its
client, so threads and a caller's own MLflow setup are left alone.

MLflow is imported inside functions only: `import lineage` must stay light.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lineage.errors import LineageError, TrackingError
from lineage.graph.db import sqlite_url
from lineage.redact import redact_url

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from lineage.workspace import Workspace

MLFLOW_DIR = "mlflow"
DB_FILE = "mlflow.db"
ARTIFACTS_DIR = "artifacts"
# A server that does not answer within this many seconds counts as unreachable.
HEALTH_TIMEOUT_S = 5.0
# MLflow's client settings lineage relies on (public MLflow environment variables, set
# only when unset): its HTTP client retries with exponential backoff for minutes by
# default, and a tracking write should fail in seconds (the queue keeps it for later);
# and it prints "View run … at: URL" on stdout, which would corrupt `--json` output.
CLIENT_SETTINGS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}


def mlflow_dir(workspace: Workspace) -> Path:
    return workspace.lineage_dir / MLFLOW_DIR


def embedded_uri(workspace: Workspace) -> str:
    return sqlite_url(mlflow_dir(workspace) / DB_FILE)


def tracking_uri(workspace: Workspace) -> str:
    """The MLflow tracking (and registry) URI of a workspace.

    `$MLFLOW_TRACKING_URI` wins over the workspace config, which wins over the
    embedded SQLite store.
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI") or workspace.config.mlflow_tracking_uri
    return uri or embedded_uri(workspace)


def is_embedded(workspace: Workspace) -> bool:
    """True when the workspace uses its own SQLite store (no tracking server)."""
    return tracking_uri(workspace) == embedded_uri(workspace)


def artifact_root(workspace: Workspace) -> str | None:
    """Artifact location for new experiments: the workspace folder when embedded;
    None for a server, which then stores artifacts where it was told to."""
    if not is_embedded(workspace):
        return None
    return (mlflow_dir(workspace) / ARTIFACTS_DIR).as_uri()


def _mlflow_version() -> str:
    from importlib.metadata import version

    return version("mlflow")


def _template_db() -> Path:
    """A migrated, empty MLflow SQLite DB for this MLflow version (built once per user)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lineage"
    cache.mkdir(parents=True, exist_ok=True)
    template = cache / f"mlflow-{_mlflow_version()}.db"
    if template.exists():
        return template
    with file_lock(cache / f"mlflow-{_mlflow_version()}.lock"):
        if template.exists():  # another process built it while we waited
            return template
        scratch = Path(tempfile.mkdtemp(prefix="lineage-mlflow-", dir=cache))
        try:
            _migrate(scratch / DB_FILE, scratch / ARTIFACTS_DIR)
            # Rename only once migrated, so no process ever copies a half-built DB.
            os.replace(scratch / DB_FILE, template)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return template


def _migrate(db_path: Path, artifacts: Path) -> None:
    """Create and migrate an MLflow SQLite store (tracking + registry tables)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(sqlite_url(db_path), artifacts.as_uri())  # type: ignore[no-untyped-call]
    store.engine.dispose()


@contextlib.contextmanager
def file_lock(path: Path, *, blocking: bool = True) -> Iterator[bool]:
    """An exclusive advisory lock on `path` (created if missing); yields whether it
    was acquired (always True when blocking). Each call opens the file anew, so the
    lock also excludes other threads of this process."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        flags = fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB
        try:
            fcntl.flock(handle.fileno(), flags)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def init_tracking(workspace: Workspace) -> str:
    """Make the workspace's MLflow store ready; return its tracking URI. Idempotent.

    Embedded: create `.lineage/mlflow/` with a migrated SQLite DB (copied from the
    per-user template) and the artifact folder, under a file lock so concurrent
    first uses do not race. Server: check that it answers (`TrackingError` if not).
    Called by every `mlflow_session`, so nothing needs to call it up front.
    """
    uri = tracking_uri(workspace)
    if not is_embedded(workspace):
        check_reachable(uri)
        return uri
    folder = mlflow_dir(workspace)
    db_path = folder / DB_FILE
    if db_path.exists():
        return uri
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ARTIFACTS_DIR).mkdir(exist_ok=True)
        with file_lock(folder / ".migrate.lock"):
            if db_path.exists():
                return uri
            staging = folder / (DB_FILE + ".tmp")
            try:
                shutil.copyfile(_template_db(), staging)
            except OSError:
                # No writable per-user cache (a container's read-only home):
                # migrate this workspace's copy directly, still under the lock.
                staging.unlink(missing_ok=True)
                _migrate(staging, folder / ARTIFACTS_DIR)
            # The template's default experiment points at the template's scratch
            # folder; point it into this workspace like everything else.
            with contextlib.closing(sqlite3.connect(staging)) as conn:
                conn.execute(
                    "UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                    ((folder / ARTIFACTS_DIR / "0").as_uri(),),
                )
                conn.commit()
                # WAL (a property of the file, so it sticks): a reader (the MLflow UI,
                # a promotion) does not block the background writer, nor it them.
                conn.execute("PRAGMA journal_mode=WAL")
            os.replace(staging, db_path)
    except LineageError:
        raise
    except Exception as exc:
        raise TrackingError(
            f"cannot create the MLflow store in {folder}: {_one_line(exc)}"
        ) from exc
    return uri


def check_reachable(uri: str) -> None:
    """Fail fast, with one line, when a tracking server does not answer."""
    if not uri.startswith(("http://", "https://")):
        return
    import requests

    try:
        response = requests.get(uri.rstrip("/") + "/health", timeout=HEALTH_TIMEOUT_S)
    except requests.RequestException as exc:
        raise TrackingError(
            f"MLflow tracking server {redact_url(uri)} is unreachable ({type(exc).__name__}); "
            "start it or fix MLFLOW_TRACKING_URI, then run `lineage sync mlflow`"
        ) from exc
    if response.status_code >= 500:
        raise TrackingError(
            f"MLflow tracking server {redact_url(uri)} answered HTTP {response.status_code}; "
            "retry later, then run `lineage sync mlflow`"
        )


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


@contextlib.contextmanager
def mlflow_session(workspace: Workspace) -> Iterator[MlflowClient]:
    """An `MlflowClient` on the workspace's store (created on first use).

    Any MLflow, network or SQL failure inside becomes a `TrackingError` (lineage's own
    errors pass through). Nothing process-wide is changed but `CLIENT_SETTINGS`.
    """
    from mlflow import MlflowClient

    for name, value in CLIENT_SETTINGS.items():
        os.environ.setdefault(name, value)
    uri = init_tracking(workspace)  # creates the embedded store, or checks the server
    try:
        yield MlflowClient(tracking_uri=uri, registry_uri=uri)
    except LineageError:
        raise
    except _mlflow_failures() as exc:
        raise TrackingError(f"MLflow at {redact_url(uri)} failed: {_one_line(exc)}") from exc


def _mlflow_failures() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "MLflow failed" (anything else is the caller's own bug or
    fault and passes through unchanged)."""
    import requests
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    # SQLAlchemy errors inside a session come from MLflow's SQLite store: lineage's
    # own graph-DB errors are raised as LineageErrors or outside MLflow calls.
    return (MlflowException, requests.RequestException, OSError, SQLAlchemyError)


# Experiment ids by (tracking URI, model): looked up once per process.
_experiments: dict[tuple[str, str], str] = {}
_experiments_lock = threading.Lock()


def experiment_id(client: MlflowClient, workspace: Workspace, model_name: str) -> str:
    """The MLflow experiment of a lineage model (`lineage/NAME`), created on first use
    with an explicit artifact location when embedded."""
    key = (str(client.tracking_uri), model_name)
    with _experiments_lock:
        if key in _experiments:
            return _experiments[key]
    found_id = _find_or_create_experiment(client, workspace, model_name)
    with _experiments_lock:
        _experiments[key] = found_id
    return found_id


def _find_or_create_experiment(client: MlflowClient, workspace: Workspace, model_name: str) -> str:
    name = f"lineage/{model_name}"
    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            client.restore_experiment(found.experiment_id)
        return str(found.experiment_id)
    root = artifact_root(workspace)
    location = None if root is None else f"{root}/{model_name}"
    try:
        return str(
            client.create_experiment(
                name, artifact_location=location, tags={"lineage.model": model_name}
            )
        )
    except Exception:
        # Another process created it between our lookup and create.
        again = client.get_experiment_by_name(name)
        if again is None:
            raise
        return str(again.experiment_id)


def tag_value(value: Any) -> str:
    """MLflow tag values are strings of bounded length."""
    text = "" if value is None else str(value)
    return text if len(text) <= 5000 else text[:4997] + "..."
