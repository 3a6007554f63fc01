"""`stats`: logical vs stored bytes and the encodings used, per version and in total.

Stored bytes are attributed to the first version (in the order given) that needs an
object, delta bases included, so the per-version figures add up to the total. Encoding
counts are per tensor: ``dedup`` (stored by an earlier version), ``derived`` (re-made
from the recipe), or the object's encoding (``plain``, ``xor``, ``sub``, ``gsub``,
``mxor``, ``qdelta``; ``cast+`` prefix when the base has another dtype).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from lineage.errors import MissingObjectError, StoreError
from lineage.store.backend import ObjectStore


@dataclass
class VersionStats:
    """Figures for one version."""

    manifest_id: str
    logical_bytes: int = 0
    stored_bytes: int = 0
    objects: int = 0
    encodings: dict[str, int] = field(default_factory=dict)
    derived: bool = False
    approximate: bool = False

    @property
    def ratio(self) -> float:
        """Logical / stored bytes (inf when nothing new was stored)."""
        return self.logical_bytes / self.stored_bytes if self.stored_bytes else float("inf")


@dataclass
class StatsReport:
    """Per-version and total storage figures; `to_dict` is JSON-serialisable."""

    versions: dict[str, VersionStats]
    logical_bytes: int = 0
    stored_bytes: int = 0
    objects: int = 0
    encodings: dict[str, int] = field(default_factory=dict)
    temp_files: int = 0  # leftovers of killed writers (gc removes the stale ones)
    temp_bytes: int = 0

    @property
    def ratio(self) -> float:
        """Total logical / stored bytes."""
        return self.logical_bytes / self.stored_bytes if self.stored_bytes else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (ratios rounded; no infinities)."""

        def one(v: VersionStats) -> dict[str, Any]:
            ratio = round(v.ratio, 3) if v.stored_bytes else None
            return {
                "manifest_id": v.manifest_id,
                "logical_bytes": v.logical_bytes,
                "stored_bytes": v.stored_bytes,
                "objects": v.objects,
                "ratio": ratio,
                "encodings": dict(sorted(v.encodings.items())),
                "derived": v.derived,
                "approximate": v.approximate,
            }

        return {
            "versions": {label: one(v) for label, v in self.versions.items()},
            "total": {
                "logical_bytes": self.logical_bytes,
                "stored_bytes": self.stored_bytes,
                "objects": self.objects,
                "ratio": round(self.ratio, 3),
                "encodings": dict(sorted(self.encodings.items())),
            },
            "temp_files": self.temp_files,
            "temp_bytes": self.temp_bytes,
        }


def _encoding(store: ObjectStore, oid: str) -> str:
    header = store.object_header(oid)
    if header.get("kind") == "blob":
        return "blob"
    enc = str(header.get("enc", "?"))
    if header.get("base") and header.get("base_dtype", header.get("dtype")) != header.get("dtype"):
        return f"cast+{enc}"
    return enc


def stats(store: ObjectStore, versions: dict[str, str]) -> StatsReport:
    """Storage figures for the given versions (label -> manifest id)."""
    sizes = {e.key: e.size for e in store.iter_objects()}
    seen: set[str] = set()
    report = StatsReport({})
    totals: Counter[str] = Counter()
    for label, mid in versions.items():
        manifest = store.get_manifest(mid)
        vs = VersionStats(mid, logical_bytes=manifest.total_bytes)
        vs.derived = manifest.derivation is not None
        vs.approximate = manifest.approximate
        counts: Counter[str] = Counter()
        for _, tensor in manifest.tensors():
            if not tensor.stored:
                counts["derived"] += 1
            elif tensor.object in seen:
                counts["dedup"] += 1
            else:
                try:
                    counts[_encoding(store, tensor.object)] += 1
                except MissingObjectError:
                    counts["missing"] += 1
                except StoreError:  # a damaged header: `store verify` says more
                    counts["corrupt"] += 1
        stack = list(manifest.object_ids())
        while stack:
            oid = stack.pop()
            if oid in seen or oid not in sizes:
                continue
            seen.add(oid)
            vs.objects += 1
            vs.stored_bytes += sizes[oid]
            try:
                base = store.object_header(oid).get("base")
            except StoreError:
                continue
            if isinstance(base, str):
                stack.append(base)
        vs.encodings = dict(counts)
        totals.update(counts)
        report.versions[label] = vs
        report.logical_bytes += vs.logical_bytes
        report.stored_bytes += vs.stored_bytes
        report.objects += vs.objects
    report.encodings = dict(totals)
    leftovers = store.temp_files()
    report.temp_files = len(leftovers)
    report.temp_bytes = sum(e.size for e in leftovers)
    return report
