"""`gc`: delete objects and manifests no live version needs.

Safe against a concurrent ingest in three ways: gc holds the store's lock exclusively
(ingests hold it shared), objects and manifests younger than the grace period are never
deleted (an ingest touches every object it re-uses), and every manifest younger than the
grace period counts as live (one just stored, whose version row is not yet in the DB).
Liveness follows delta bases: an object is live if a live object is a delta against it.

Writers killed mid-write leave temp files; gc reports them and removes those older than
the grace period (a younger one may belong to a writer that is still running).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from lineage.errors import MissingObjectError
from lineage.store.backend import ObjectStore

DEFAULT_GRACE_SECONDS = 3600.0


@dataclass
class GcReport:
    """What gc removed (or would remove, with ``dry_run``)."""

    dry_run: bool
    live_objects: int = 0
    removed_objects: list[str] = field(default_factory=list)
    removed_bytes: int = 0
    removed_manifests: list[str] = field(default_factory=list)
    kept_young: int = 0  # unreferenced but inside the grace period
    missing_manifests: list[str] = field(default_factory=list)
    temp_files: int = 0  # leftovers of killed writers found
    temp_bytes: int = 0
    removed_temp_files: list[str] = field(default_factory=list)
    removed_temp_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


def live_objects(store: ObjectStore, manifest_ids: set[str]) -> tuple[set[str], list[str]]:
    """Objects reachable from the manifests (delta bases included), and missing manifests."""
    live: set[str] = set()
    missing: list[str] = []
    stack: list[str] = []
    for mid in sorted(manifest_ids):
        try:
            stack.extend(store.get_manifest(mid).object_ids(stored_only=False))
        except MissingObjectError:
            missing.append(mid)
    while stack:
        oid = stack.pop()
        if oid in live:
            continue
        live.add(oid)
        with contextlib.suppress(MissingObjectError):
            base = store.object_header(oid).get("base")
            if base:
                stack.append(base)
    return live, missing


def gc(
    store: ObjectStore,
    live_manifest_ids: set[str],
    *,
    dry_run: bool = False,
    grace_seconds: float = DEFAULT_GRACE_SECONDS,
) -> GcReport:
    """Remove every object and manifest not reachable from `live_manifest_ids`.

    A corrupt live manifest aborts gc (`CorruptObjectError`) rather than guessing.
    """
    report = GcReport(dry_run=dry_run)
    with store.lock(exclusive=True):
        now = time.time()
        manifests = list(store.iter_manifests())
        young = {m.key for m in manifests if now - m.mtime < grace_seconds}
        roots = set(live_manifest_ids) | young
        live, report.missing_manifests = live_objects(store, roots)
        report.live_objects = len(live)
        for entry in store.iter_objects():
            if entry.key in live:
                continue
            if now - entry.mtime < grace_seconds:
                report.kept_young += 1
                continue
            report.removed_objects.append(entry.key)
            report.removed_bytes += entry.size
            if not dry_run:
                store.delete_object(entry.key)
        for m in manifests:
            if m.key not in roots:
                report.removed_manifests.append(m.key)
                if not dry_run:
                    store.delete_manifest(m.key)
        leftovers = store.temp_files()
        report.temp_files = len(leftovers)
        report.temp_bytes = sum(e.size for e in leftovers)
        stale = [e for e in leftovers if e.mtime < now - grace_seconds]
        if not dry_run:
            stale = store.remove_stale_temp(now - grace_seconds)
        report.removed_temp_files = [e.key for e in stale]
        report.removed_temp_bytes = sum(e.size for e in stale)
    return report
