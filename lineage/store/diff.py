"""`diff_manifests`: what changed between two versions, tensor by tensor.

Tensors with the same object id are identical without reading a byte; only changed
tensors are decoded, a pair per thread at a time, to measure the relative L2 change
``|b - a| / |a|`` and the largest absolute change (in float64, a chunk at a time, so
memory stays at the two decoded tensors whatever the model's size). Tensors are
matched by name, then by name without wrapper prefixes. JSON config files that differ
are compared key by key.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
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
    # pieces of large side files are not tensors: such a file is compared as a file
    return {t.name: t for f, t in manifest.tensors() if f.kind == "safetensors"}


def diff_manifests(store: ObjectStore, a: Manifest, b: Manifest) -> DiffReport:
    """Compare two manifests (see the module docstring)."""
    report = DiffReport()
    ta, tb = _tensor_map(a), _tensor_map(b)
    norm_a = {normalize(n): n for n in ta}
    matched_a: set[str] = set()
    pairs: list[tuple[TensorEntry, TensorEntry]] = []
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
            pairs.append((old, tensor))
    # one pair per thread at a time: memory stays at a few decoded tensors
    with ThreadPoolExecutor(max_workers=store.workers or os.cpu_count() or 2) as pool:
        report.changed = list(pool.map(lambda pair: _measure(store, *pair), pairs))
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


def _file_key(f: FileEntry) -> tuple[object, ...]:
    return (f.size, f.object, f.header_object, tuple(t.object for t in f.tensors))


#: elements converted to float64 at a time.
DIFF_STEP = 1 << 20


def _bits(store: ObjectStore, t: TensorEntry) -> np.ndarray:
    return read_bytes(store, t.object, t.nbytes).view(uint_type(itemsize(t.dtype)))


def _as_float64(bits: np.ndarray, dtype: str) -> np.ndarray:
    if dtype in FLOATS:
        return to_float64(bits, dtype)
    signed = {"I8": np.int8, "I16": np.int16, "I32": np.int32, "I64": np.int64}.get(dtype)
    return (bits.view(signed) if signed else bits).astype(np.float64)


def _measure(store: ObjectStore, old: TensorEntry, new: TensorEntry) -> TensorChange:
    change = TensorChange(new.name, new.dtype, list(new.shape), None, None)
    if old.shape != new.shape or not (old.stored and new.stored):
        return change
    try:
        ba, bb = _bits(store, old), _bits(store, new)
    except LineageError:
        return change
    norm_sq = delta_sq = 0.0
    max_abs = 0.0
    for start in range(0, ba.size, DIFF_STEP):
        va = _as_float64(ba[start : start + DIFF_STEP], old.dtype)
        delta = _as_float64(bb[start : start + DIFF_STEP], new.dtype) - va
        norm_sq += float(np.dot(va, va))
        delta_sq += float(np.dot(delta, delta))
        max_abs = max(max_abs, float(np.max(np.abs(delta))))
    norm, delta_norm = float(np.sqrt(norm_sq)), float(np.sqrt(delta_sq))
    change.relative_l2 = delta_norm / norm if norm else delta_norm
    change.max_abs = max_abs
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
        da = _flatten(json.loads(bytes(read_bytes(store, a.object or "", a.size))))
        db = _flatten(json.loads(bytes(read_bytes(store, b.object or "", b.size))))
    except (LineageError, ValueError, RecursionError):
        return None
    return [
        {"key": key, "a": da.get(key), "b": db.get(key)}
        for key in sorted(set(da) | set(db))
        if da.get(key) != db.get(key)
    ]
