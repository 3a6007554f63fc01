"""Store housekeeping at the workspace level: stats, verify, gc, diff, likely parents.

The object store knows manifests, not versions; these verbs map versions (from the
graph DB) to their manifests so reports name `model@N`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from lineage.db import schema as t

if TYPE_CHECKING:
    from lineage.store import DiffReport, GcReport, StatsReport, VerifyReport
    from lineage.workspace import Workspace


def version_manifests(workspace: Workspace, refs: list[str] | None = None) -> dict[str, str]:
    """`model@N` -> manifest id, for the given refs or for every version."""
    if refs:
        return {v.ref: v.manifest_id for v in (workspace.resolve(ref) for ref in refs)}
    with workspace.engine.connect() as conn:
        rows = conn.execute(
            select(t.models.c.name, t.versions.c.number, t.versions.c.manifest_id)
            .join(t.models, t.models.c.id == t.versions.c.model_id)
            .order_by(t.models.c.name, t.versions.c.number)
        )
        return {f"{name}@{number}": manifest for name, number, manifest in rows}


def store_stats(workspace: Workspace, refs: list[str] | None = None) -> StatsReport:
    from lineage.store import stats

    return stats(workspace.store, version_manifests(workspace, refs))


def store_verify(workspace: Workspace, refs: list[str] | None = None) -> VerifyReport:
    from lineage.store import verify

    return verify(workspace.store, version_manifests(workspace, refs))


def store_gc(workspace: Workspace, *, dry_run: bool = False, **options: Any) -> GcReport:
    """Delete objects that no version references (recent writes are kept: see gc)."""
    from lineage.store import gc

    live = set(version_manifests(workspace).values())
    return gc(workspace.store, live, dry_run=dry_run, **options)


def diff_versions(workspace: Workspace, a: str, b: str) -> DiffReport:
    from lineage.store import diff_manifests

    return diff_manifests(workspace.store, workspace.manifest(a), workspace.manifest(b))


def likely_parents(workspace: Workspace, source: Path, limit: int = 5) -> list[tuple[str, float]]:
    """Stored versions most similar to the weights in `source`, best first.

    Compares against each model's latest version (sketches, not whole tensors), so it
    stays fast with thousands of versions.
    """
    from lineage.store import find_similar

    candidates = {v.ref: v.manifest_id for v in workspace.search(latest_only=True)}
    return find_similar(workspace.store, source, candidates, limit=limit)
