"""The record of cascade runs: what each cascade planned and what became of every node.

The cascade flow calls `record_cascade_run` once, when it ends; `lineage ui` lists the
records (`list_cascade_runs`) and draws each on the lineage graph. A workspace made
before this table existed is migrated on the first write; reading one just finds no
cascades.

>>> run_id = record_cascade_run(ws, summary, started_at=started)     # doctest: +SKIP
>>> [(r.upstream, r.status) for r in list_cascade_runs(ws)]          # doctest: +SKIP
[('base@2', 'failed')]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import inspect, select

from lineage.db import schema as t

if TYPE_CHECKING:
    from sqlalchemy import Engine

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


@dataclass
class CascadeRecord:
    """One cascade run: its upstream change, when it ran, and each node's outcome."""

    id: int
    upstream: str
    replaces: str
    started_at: datetime
    finished_at: datetime | None
    status: str
    flow_run_id: str | None
    nodes: list[dict[str, Any]] = field(default_factory=list)
    levels: list[list[str]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["started_at"] = self.started_at.isoformat()
        data["finished_at"] = self.finished_at.isoformat() if self.finished_at else None
        return data


def cascade_status(summary: dict[str, Any]) -> str:
    """`failed` when any node failed or was blocked, else `passed`."""
    counts = summary.get("counts") or {}
    return FAILED if counts.get("failed") or counts.get("blocked") else PASSED


def _has_table(engine: Engine) -> bool:
    return inspect(engine).has_table(t.cascade_runs.name)


def record_cascade_run(
    workspace: Workspace,
    summary: dict[str, Any],
    *,
    started_at: datetime,
    finished_at: datetime | None = None,
) -> int:
    """Store the cascade flow's summary (`CascadeRun.summary()`); returns the record id."""
    if not _has_table(workspace.engine):
        # A workspace made by an older lineage: bring its schema up (idempotent).
        from lineage.db.migrate import upgrade

        upgrade(workspace.engine)
    nodes = [{key: node.get(key) for key in NODE_FIELDS} for node in summary.get("nodes", [])]
    stored = {
        "nodes": nodes,
        "levels": summary.get("levels") or [],
        "counts": summary.get("counts") or {},
    }
    with workspace.engine.begin() as conn:
        result = conn.execute(
            t.cascade_runs.insert().values(
                upstream=summary["upstream"],
                replaces=summary.get("replaces") or "",
                started_at=started_at,
                finished_at=finished_at or datetime.now(UTC),
                status=cascade_status(summary),
                flow_run_id=summary.get("flow_run_id"),
                summary=stored,
            )
        )
    assert result.inserted_primary_key is not None
    return int(result.inserted_primary_key[0])


def list_cascade_runs(workspace: Workspace, limit: int = 200) -> list[CascadeRecord]:
    """The most recent cascade runs, newest first (none for a workspace without any)."""
    if not _has_table(workspace.engine):
        return []
    query = (
        select(t.cascade_runs)
        .order_by(t.cascade_runs.c.started_at.desc(), t.cascade_runs.c.id.desc())
        .limit(limit)
    )
    with workspace.engine.connect() as conn:
        return [_record(row) for row in conn.execute(query)]


def _record(row: Any) -> CascadeRecord:
    summary = row.summary or {}
    return CascadeRecord(
        id=int(row.id),
        upstream=row.upstream,
        replaces=row.replaces,
        started_at=_aware(row.started_at),
        finished_at=_aware(row.finished_at) if row.finished_at else None,
        status=row.status,
        flow_run_id=row.flow_run_id,
        nodes=list(summary.get("nodes") or []),
        levels=list(summary.get("levels") or []),
        counts=dict(summary.get("counts") or {}),
    )


def _aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; every time lineage stores is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
