"""Store housekeeping at the workspace level: stats, verify, gc, diff, likely parents.

The object store knows manifests, not versions; these verbs map versions (from the
graph DB) to their manifests so reports name `model@N`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from lineage.errors import UsageError

if TYPE_CHECKING:
    from lineage.store import DiffReport, GcReport, StatsReport, VerifyReport
    from lineage.store.repair import RepairReport
    from lineage.workspace import Workspace


def version_manifests(workspace: Workspace, refs: list[str] | None = None) -> dict[str, str]:
    """`model@N` -> manifest id, for the given refs or for every version."""
    if refs:
        return {v.ref: v.manifest_id for v in (workspace.resolve(ref) for ref in refs)}
    return workspace.graph.version_manifests()


def store_stats(workspace: Workspace, refs: list[str] | None = None) -> StatsReport:
    from lineage.store import stats

    return stats(workspace.store, version_manifests(workspace, refs))


def store_verify(workspace: Workspace, refs: list[str] | None = None) -> VerifyReport:
    from lineage.store import verify

    return verify(workspace.store, version_manifests(workspace, refs))


def store_repair(
    workspace: Workspace, sources: list[str], refs: list[str] | None = None
) -> RepairReport:
    """Rewrite damaged objects from good bytes found by hash in `sources` (folders of
    model files, or other stores); the report says what stays unrepairable."""
    from lineage.store.repair import open_repair_source, repair

    opened = [open_repair_source(text) for text in sources]
    return repair(workspace.store, version_manifests(workspace, refs), opened)


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


#: Similarity from which a stored version counts as a likely parent: suggested after an
#: `add` without parents, taken by `--parent auto`, tried as a delta base.
LIKELY_PARENT_SCORE = 0.5


def suggest_parents(
    workspace: Workspace, source: Path, *, exclude_model: str, limit: int = 3
) -> list[tuple[str, float]]:
    """Likely parents worth naming to the user (MGit's autopilot): similar enough, and
    not versions of the model itself."""
    return [
        (ref, score)
        for ref, score in likely_parents(workspace, source)
        if score >= LIKELY_PARENT_SCORE and not ref.startswith(f"{exclude_model}@")
    ][:limit]


def auto_parent(workspace: Workspace, source: Path) -> tuple[str, float]:
    """What `--parent auto` picks: the most similar stored version (`UsageError` if none)."""
    candidates = likely_parents(workspace, source)
    if not candidates:
        raise UsageError("--parent auto found no similar model in the workspace")
    return candidates[0]
