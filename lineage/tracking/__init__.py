"""The mirrors of the lineage in other systems: MLflow (tracking and registry) and
Prefect (events).

MLflow sees exactly what lineage holds: every version of every model is a model
version with the same number (`sentiment@3` is `models:/sentiment/3`), tagged with its
parents and a link back to lineage, backed by a pointer LoggedModel (no weight
copies); recipe-made versions and test runs are MLflow runs (params, loss curve,
metrics, also on the LoggedModel); the registry aliases are lineage's, and each alias
change is a small run in the model's experiment.

Commands do not wait for MLflow: `lineage.ops` queues what MLflow should learn
(`mirror.queue_*`, a durable local queue, `queue.py`) and a background writer
(`writer.py`) writes it; `lineage sync mlflow` drains the queue and repairs anything
that fell behind (`sync.py`). Explicit promotions and rollbacks move the registry
aliases synchronously, in step with the lineage DB (see `lineage.ops.promote`).

The synchronous functions below (MLflow is imported only when one of them runs):

- `tracking_uri(workspace) -> uri` — `$MLFLOW_TRACKING_URI`, else the workspace
  config `[mlflow] tracking_uri`, else SQLite in `.lineage/mlflow/` (created lazily).
- `register_version(workspace, version) -> mlflow_version` (== `version.number`)
- `record_derive(workspace, version, *, metrics=None, loss_curve=None, ...) -> run_id`
- `record_tests(workspace, version, outcomes=None, ...) -> run_id | None`
- `sync_aliases(workspace, model_name) -> {alias: mlflow_version}`
- `sync_workspace(workspace, names=None) -> SyncReport` — `lineage sync mlflow`.

All are idempotent and raise `lineage.errors.TrackingError` (one line) when MLflow
cannot be reached.
"""

from __future__ import annotations

from lineage.tracking.backend import init_tracking, mlflow_session, tracking_uri
from lineage.tracking.mirror import (
    queue_aliases,
    queue_derive,
    queue_tests,
    queue_version,
    record_derive,
    record_tests,
    register_version,
    sync_aliases,
)
from lineage.tracking.sync import SyncReport, sync_workspace

__all__ = [
    "SyncReport",
    "init_tracking",
    "mlflow_session",
    "queue_aliases",
    "queue_derive",
    "queue_tests",
    "queue_version",
    "record_derive",
    "record_tests",
    "register_version",
    "sync_aliases",
    "sync_workspace",
    "tracking_uri",
]
