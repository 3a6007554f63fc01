"""`verify`: re-read and re-hash every object the given versions need.

Reports, per version label, the objects that are missing or corrupt (a delta whose base
is bad is itself undecodable, and is reported with the reason), and manifests that are
missing, corrupt or unsafe (a file path that would leave the checkout folder). Each
object is checked once however many versions share it; the decoded cache is emptied
first so every byte really comes from the backend. One bad object or manifest never
stops the check: every other version is still verified and reported.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from lineage.errors import LineageError, MissingObjectError, StoreError
from lineage.store.backend import ObjectStore
from lineage.store.reader import read_bytes


@dataclass
class VersionCheck:
    """What verify found for one version."""

    manifest_id: str
    objects: int = 0
    missing: list[str] = field(default_factory=list)
    corrupt: list[dict[str, str]] = field(default_factory=list)  # {"object", "error"}
    derived_tensors: int = 0  # not stored: checked at checkout against their hashes
    manifest_error: str | None = None

    @property
    def ok(self) -> bool:
        """No problem found."""
        return not (self.missing or self.corrupt or self.manifest_error)


@dataclass
class VerifyReport:
    """Per-version results of `verify`."""

    versions: dict[str, VersionCheck]

    @property
    def ok(self) -> bool:
        """Every version is intact."""
        return all(v.ok for v in self.versions.values())

    def problems(self) -> list[str]:
        """One line per problem, naming the version and the object."""
        lines = []
        for label, check in self.versions.items():
            if check.manifest_error:
                lines.append(f"{label}: {check.manifest_error}")
            lines += [f"{label}: object {oid} is missing" for oid in check.missing]
            lines += [f"{label}: {c['error']}" for c in check.corrupt]
        return lines

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "ok": self.ok,
            "versions": {
                label: {**asdict(check), "ok": check.ok} for label, check in self.versions.items()
            },
        }


def verify(store: ObjectStore, versions: dict[str, str]) -> VerifyReport:
    """Check every object of every version (label -> manifest id)."""
    store.cache.clear()
    report = VerifyReport({})
    needed: dict[str, list[tuple[str, int]]] = {}
    for label, mid in versions.items():
        check = VersionCheck(mid)
        report.versions[label] = check
        try:
            manifest = store.get_manifest(mid)
        except StoreError as exc:
            check.manifest_error = str(exc)
            continue
        check.derived_tensors = sum(1 for _, t in manifest.tensors() if not t.stored)
        pairs = sorted(manifest.object_sizes().items())
        check.objects = len(pairs)
        needed[label] = pairs
    unique = sorted({pair for pairs in needed.values() for pair in pairs})
    with ThreadPoolExecutor(max_workers=store.workers or os.cpu_count() or 2) as pool:
        outcomes = dict(
            zip(unique, pool.map(lambda pair: _check(store, *pair), unique), strict=True)
        )
    for label, pairs in needed.items():
        check = report.versions[label]
        for oid, size in pairs:
            status, message = outcomes[(oid, size)]
            if status == "missing":
                check.missing.append(oid)
            elif status == "corrupt":
                check.corrupt.append({"object": oid, "error": message})
    store.cache.clear()
    return report


def _check(store: ObjectStore, oid: str, nbytes: int) -> tuple[str, str]:
    try:
        read_bytes(store, oid, nbytes)
    except MissingObjectError as exc:
        return "missing", str(exc)
    except LineageError as exc:  # corrupt, or a backend failure on this one object
        return "corrupt", str(exc)
    return "ok", ""
