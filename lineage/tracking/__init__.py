"""MLflow tracking and registry for lineage: the faithful record of what the cascade did.

Public functions (MLflow is imported only when one of them runs):

- `init_tracking(workspace) -> uri` — migrate the embedded store once (or check the
  server answers); `lineage init` calls it.
- `tracking_uri(workspace) -> uri` — `$MLFLOW_TRACKING_URI`, else the workspace
  config `[mlflow] tracking_uri`, else SQLite in `.lineage/mlflow/`.
- `record_derive(workspace, version, *, metrics, loss_curve, cascade_id=None,
  flow_run_id=None, flow_run_url=None, image_digest=None, dataset=None) -> run_id`
- `record_tests(workspace, version, outcomes=None, *, cascade_id=None, ...) -> run_id | None`
- `register_version(workspace, version) -> mlflow_version` — pointer LoggedModel +
  model version tagged with its parents.
- `sync_aliases(workspace, model_name) -> {alias: mlflow_version}` — registry aliases
  and alias-history tags in step with the lineage DB.
- `sync_workspace(workspace, names=None) -> SyncReport` — `lineage sync mlflow`:
  repair everything that fell behind (idempotent).

All are idempotent and raise `lineage.errors.TrackingError` (one line) when MLflow
cannot be reached. See the module docstrings of `runs`, `registry`, `pointer`,
`backend` and `sync` for details.
"""

from __future__ import annotations

from lineage.tracking.backend import init_tracking, mlflow_session, tracking_uri
from lineage.tracking.registry import register_version, sync_aliases
from lineage.tracking.runs import latest_test_results, record_derive, record_tests
from lineage.tracking.sync import SyncReport, sync_workspace

__all__ = [
    "SyncReport",
    "init_tracking",
    "latest_test_results",
    "mlflow_session",
    "record_derive",
    "record_tests",
    "register_version",
    "sync_aliases",
    "sync_workspace",
    "tracking_uri",
]
