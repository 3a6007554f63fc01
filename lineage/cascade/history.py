"""The record of cascade runs: what each cascade planned and what became of every node.

The cascade flow calls `record_cascade_run` once, when it ends; `lineage ui` lists the
records (`list_cascade_runs`) and draws each on the lineage graph. A workspace made
before this table existed is migrated on the first write; reading one just finds no
cascades.

>>> summary = {"upstream": "base@2", "replaces": "base@1", "counts": {"failed": 1},
...            "nodes": [{"model": "ft", "old_ref": "ft@1", "status": "failed"}]}
>>> run_id = record_cascade_run(ws, summary, started_at=utc_now())
>>> [(r.upstream, r.status, r.nodes[0]["status"]) for r in list_cascade_runs(ws)]
[('base@2', 'failed', 'failed')]
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from lineage.records import CascadeRecord, utc_now

if TYPE_CHECKING:
    from lineage.workspace import Workspace

#: A cascade passed when no node failed or was blocked by a failed parent.
PASSED, FAILED = "passed", "failed"
#: What a node's summary keeps in the record (the flow's timing trace is left out).
NODE_FIELDS = (
    "model",
    "old_ref",
    "new_ref",
    "status",
    "cached",
    "level",
    "tests",
    "aliases",
    "error",
    "warnings",
    "seconds",
)


def cascade_status(summary: dict[str, Any]) -> str:
    """`failed` when any node failed or was blocked, else `passed`."""
    counts = summary.get("counts") or {}
    return FAILED if counts.get("failed") or counts.get("blocked") else PASSED


def record_cascade_run(
    workspace: Workspace,
    summary: dict[str, Any],
    *,
    started_at: datetime,
    finished_at: datetime | None = None,
) -> int:
    """Store the cascade flow's summary (`CascadeRun.summary()`); returns the record id."""
    nodes = [{key: node.get(key) for key in NODE_FIELDS} for node in summary.get("nodes", [])]
    record = CascadeRecord(
        id=0,
        upstream=summary["upstream"],
        replaces=summary.get("replaces") or "",
        started_at=started_at,
        finished_at=finished_at or utc_now(),
        status=cascade_status(summary),
        flow_run_id=summary.get("flow_run_id"),
        nodes=nodes,
        levels=summary.get("levels") or [],
        counts=summary.get("counts") or {},
    )
    return workspace.graph.record_cascade_run(record)


def list_cascade_runs(workspace: Workspace, limit: int = 200) -> list[CascadeRecord]:
    """The most recent cascade runs, newest first."""
    return workspace.graph.cascade_runs(limit)
