"""`diff_manifests`: what changed between two versions, tensor by tensor.

Tensors with the same object id are identical without reading a byte; only changed
tensors are decoded, to measure the relative L2 change ``|b - a| / |a|`` and the largest
absolute change. Tensors are matched by name, then by name without wrapper prefixes.
JSON config files that differ are compared key by key.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from lineage.errors import LineageError
from lineage.store.backend import ObjectStore
from lineage.store.dtypes import FLOATS, itemsize, to_float64, uint_type
from lineage.store.manifest import FileEntry, Manifest, TensorEntry
from lineage.store.matching import normalize
from lineage.store.reader import read_bytes


@dataclass
class TensorChange:
    """A tensor present in both versions with different content."""

    name: str
    dtype: str
    shape: list[int]
    relative_l2: float | None  # None: not comparable (shape differs or bytes not stored)
    max_abs: float | None


@dataclass
class DiffReport:
    """Differences between version a and version b."""

    identical: list[str] = field(default_factory=list)
    changed: list[TensorChange] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    files_added: list[str] = field(default_factory=list)
    files_removed: list[str] = field(default_factory=list)
    files_changed: list[str] = field(default_factory=list)
    config: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # path -> key diffs

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


def _tensor_map(manifest: Manifest) -> dict[str, TensorEntry]:
    return {t.name: t for _, t in manifest.tensors()}


def diff_manifests(store: ObjectStore, a: Manifest, b: Manifest) -> DiffReport:
    """Compare two manifests (see the module docstring)."""
    report = DiffReport()
    ta, tb = _tensor_map(a), _tensor_map(b)
    norm_a = {normalize(n): n for n in ta}
    matched_a: set[str] = set()
    for name, tensor in tb.items():
        a_name = name if name in ta else norm_a.get(normalize(name))
        if a_name is None or a_name in matched_a:
            report.added.append(name)
            continue
        matched_a.add(a_name)
        old = ta[a_name]
        if old.object == tensor.object and old.dtype == tensor.dtype and old.shape == tensor.shape:
            report.identical.append(name)
        else:
            report.changed.append(_measure(store, old, tensor))
    report.removed = sorted(set(ta) - matched_a)
    fa = {f.path: f for f in a.files}
    fb = {f.path: f for f in b.files}
    report.files_added = sorted(set(fb) - set(fa))
    report.files_removed = sorted(set(fa) - set(fb))
    for path in sorted(set(fa) & set(fb)):
        if _file_key(fa[path]) != _file_key(fb[path]):
            report.files_changed.append(path)
            if path.endswith(".json") and fa[path].kind == "blob":
                changes = _json_diff(store, fa[path], fb[path])
                if changes is not None:
                    report.config[path] = changes
    return report


def _file_key(f: FileEntry) -> tuple:
    return (f.size, f.object, f.header_object, tuple(t.object for t in f.tensors))


def _values(store: ObjectStore, t: TensorEntry) -> np.ndarray:
    raw = read_bytes(store, t.object).view(uint_type(itemsize(t.dtype)))
    if t.dtype in FLOATS:
        return to_float64(raw, t.dtype)
    signed = {"I8": np.int8, "I16": np.int16, "I32": np.int32, "I64": np.int64}.get(t.dtype)
    return (raw.view(signed) if signed else raw).astype(np.float64)


def _measure(store: ObjectStore, old: TensorEntry, new: TensorEntry) -> TensorChange:
    change = TensorChange(new.name, new.dtype, list(new.shape), None, None)
    if old.shape != new.shape or not (old.stored and new.stored):
        return change
    try:
        va, vb = _values(store, old), _values(store, new)
    except LineageError:
        return change
    delta = vb - va
    norm = float(np.linalg.norm(va))
    change.relative_l2 = (
        float(np.linalg.norm(delta)) / norm if norm else float(np.linalg.norm(delta))
    )
    change.max_abs = float(np.max(np.abs(delta))) if delta.size else 0.0
    return change


def _flatten(doc: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(doc, dict):
        out: dict[str, Any] = {}
        for key, value in doc.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: doc}


def _json_diff(store: ObjectStore, a: FileEntry, b: FileEntry) -> list[dict[str, Any]] | None:
    try:
        da = _flatten(json.loads(bytes(read_bytes(store, a.object or ""))))
        db = _flatten(json.loads(bytes(read_bytes(store, b.object or ""))))
    except (LineageError, ValueError):
        return None
    return [
        {"key": key, "a": da.get(key), "b": db.get(key)}
        for key in sorted(set(da) | set(db))
        if da.get(key) != db.get(key)
    ]
