"""Where the UI links to, and where others link into the UI.

Link targets are built only from what lineage records (model names, version numbers,
Prefect flow-run ids stored with cascade runs and versions) and from configured server
addresses; a link appears only when its server is an http(s) URL a browser can open.

- MLflow: `$MLFLOW_TRACKING_URI`, else the workspace's `[mlflow] tracking_uri`. The
  registered model mirroring a lineage model has the same name, and its model versions
  carry the lineage version number (`lineage.tracking.registry`).
- Prefect: `$PREFECT_UI_URL`, else the API URL (`$PREFECT_API_URL`, else the
  workspace's `[prefect] api_url`) without its `/api` suffix, as Prefect's own UI does.
- The UI itself: `$LINEAGE_UI_URL` (default http://127.0.0.1:8765), used by the
  cascade flow's link artifact.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    from lineage.workspace import Workspace

UI_URL_ENV = "LINEAGE_UI_URL"
DEFAULT_UI_URL = "http://127.0.0.1:8765"


def _http(url: str | None) -> str | None:
    if url and url.startswith(("http://", "https://")):
        return url.rstrip("/")
    return None


def mlflow_ui_base(workspace: Workspace) -> str | None:
    """The MLflow server's web address, or None (embedded SQLite store: no server)."""
    return _http(os.environ.get("MLFLOW_TRACKING_URI") or workspace.config.mlflow_tracking_uri)


def prefect_ui_base(workspace: Workspace) -> str | None:
    """The Prefect server's web UI address, or None when no server is configured."""
    explicit = _http(os.environ.get("PREFECT_UI_URL"))
    if explicit:
        return explicit
    api = _http(os.environ.get("PREFECT_API_URL") or workspace.config.prefect_api_url)
    if api is None:
        return None
    return api[: -len("/api")] if api.endswith("/api") else api


def mlflow_model_url(base: str, model: str) -> str:
    return f"{base}/#/models/{quote(model, safe='')}"


def mlflow_model_version_url(base: str, model: str, number: int) -> str:
    return f"{mlflow_model_url(base, model)}/versions/{int(number)}"


def prefect_flow_run_url(base: str, flow_run_id: str) -> str:
    return f"{base}/runs/flow-run/{quote(flow_run_id, safe='')}"


def configured_ui_url() -> str | None:
    """`lineage ui`'s address when the user has said where it runs ($LINEAGE_UI_URL),
    else None (nothing to link to)."""
    return _http(os.environ.get(UI_URL_ENV, "").strip() or None)


def ui_url() -> str:
    """Where `lineage ui` is expected to answer (for links from Prefect artifacts)."""
    return (os.environ.get(UI_URL_ENV) or DEFAULT_UI_URL).rstrip("/")


def cascade_ui_url(cascade_run_id: int) -> str:
    """The UI page of one recorded cascade run."""
    return f"{ui_url()}/#/cascade/{int(cascade_run_id)}"
