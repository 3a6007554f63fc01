"""gc safety, derivable versions, the lossy mode and stats."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from lineage.errors import MaterializeError, StoreError
from lineage.store import LossyOptions, ObjectStore, checkout, gc, ingest, stats, verify

from .helpers import f32, same_tree, write_safetensors


def _model(path: Path, values: np.ndarray) -> Path:
    write_safetensors(path / "model.safetensors", {"w": f32(values), "b": f32(values[:16])})
    (path / "config.json").write_text(json.dumps({"n": int(values.size)}))
    return path


def _age(store: ObjectStore, seconds: float) -> None:
    """Pretend every object and manifest was written `seconds` ago."""
    past = time.time() - seconds
    for sub in ("objects", "manifests"):
        for path in (store.root / sub).rglob("*"):  # type: ignore[attr-defined]
            if path.is_file():
                os.utime(path, (past, past))


def test_gc_removes_only_unreferenced_and_keeps_delta_bases(store: ObjectStore, tmp_path: Path):
    rng = np.random.default_rng(0)
    base_values = rng.standard_normal(40_000)
    a = ingest(store, _model(tmp_path / "a", base_values))
    aid = store.put_manifest(a)
    b = ingest(store, _model(tmp_path / "b", base_values + 1e-5), parents=[a])
    bid = store.put_manifest(b)
    c = ingest(store, _model(tmp_path / "c", rng.standard_normal(40_000)))
    cid = store.put_manifest(c)
    _age(store, 7200)
    dry = gc(store, {bid}, dry_run=True)
    assert dry.removed_objects and all(store.has_object(o) for o in dry.removed_objects)
    report = gc(store, {bid})
    assert cid in report.removed_manifests and aid in report.removed_manifests
    # a's big tensor is b's delta base: it must survive although a is not live
    base_of_b = {store.object_header(t.object).get("base") for _, t in b.tensors()} - {None}
    assert base_of_b and all(store.has_object(o) for o in base_of_b)
    assert verify(store, {"b": bid}).ok
    checkout(store, store.get_manifest(bid), tmp_path / "out")
    assert same_tree(tmp_path / "b", tmp_path / "out")
    assert json.dumps(report.to_dict())


def test_gc_spares_young_objects_and_waits_for_ingest(store: ObjectStore, tmp_path: Path):
    values = np.random.default_rng(1).standard_normal(30_000)
    m = ingest(store, _model(tmp_path / "a", values))
    mid = store.put_manifest(m)
    _age(store, 7200)
    store.delete_manifest(mid)  # the version was dropped: its objects are garbage...
    # ...but a new ingest of the same content re-uses (and refreshes) them
    again = ingest(store, _model(tmp_path / "b", values))
    report = gc(store, set())
    assert report.kept_young > 0 and not report.removed_objects
    assert verify(store, {"v": store.put_manifest(again)}).ok

    # an ingest in progress holds the lock: gc waits for it
    order: list[str] = []
    with store.lock(exclusive=False):
        worker = threading.Thread(target=lambda: (gc(store, set()), order.append("gc")))
        worker.start()
        time.sleep(0.3)
        order.append("ingest done")
    worker.join(10)
    assert order == ["ingest done", "gc"]


def _derive_fp16(parent: Path, out: Path) -> None:
    """A deterministic recipe: cast every float tensor to fp16."""
    from safetensors.numpy import load_file, save_file

    tensors = load_file(parent / "model.safetensors")
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.astype(np.float16) for k, v in tensors.items()}, out / "model.safetensors")
    shutil.copy(parent / "config.json", out / "config.json")


def test_derivable_version_stores_no_tensor_bytes(store: ObjectStore, tmp_path: Path):
    parent = _model(tmp_path / "p", np.random.default_rng(2).standard_normal(50_000))
    pm = ingest(store, parent)
    store.put_manifest(pm)
    child = tmp_path / "c"
    _derive_fp16(parent, child)
    before = sum(e.size for e in store.iter_objects())
    spec = {"recipe": "fp16", "parent": "p@1"}
    m = ingest(
        store,
        child,
        parents=[pm],
        rematerialize=lambda d: _derive_fp16(parent, d),
        derivation_spec=spec,
    )
    mid = store.put_manifest(m)
    assert m.derivation == spec and all(not t.stored for _, t in m.tensors())
    assert sum(e.size for e in store.iter_objects()) - before < 2000  # header + no tensors
    assert stats(store, {"c": mid}).versions["c"].derived
    with pytest.raises(StoreError, match="materialize"):
        checkout(store, m, tmp_path / "nope")
    calls: list[dict] = []

    def remake(s: dict, d: Path) -> None:
        calls.append(s)
        _derive_fp16(parent, d)

    checkout(store, store.get_manifest(mid), tmp_path / "out", materialize=remake)
    assert calls == [spec] and same_tree(child, tmp_path / "out")

    def wrong(s: dict, d: Path) -> None:
        _derive_fp16(parent, d)
        (d / "config.json").write_text('{"n": 0}')

    with pytest.raises(MaterializeError, match=r"config\.json"):
        checkout(store, m, tmp_path / "bad", materialize=wrong, label="c@1")
    assert not (tmp_path / "bad" / "model.safetensors").exists()


def test_rematerialize_mismatch_falls_back_to_bytes(store: ObjectStore, tmp_path: Path):
    parent = _model(tmp_path / "p", np.random.default_rng(3).standard_normal(20_000))
    child = tmp_path / "c"
    _derive_fp16(parent, child)

    def not_quite(d: Path) -> None:
        _model(d, np.zeros(20_000))

    m = ingest(store, child, rematerialize=not_quite, derivation_spec={"recipe": "x"})
    assert m.derivation is None and all(t.stored for _, t in m.tensors())
    checkout(store, m, tmp_path / "out")
    assert same_tree(child, tmp_path / "out")


def test_lossy_mode_bounds_error_and_says_approximate(store: ObjectStore, tmp_path: Path):
    rng = np.random.default_rng(4)
    base = rng.standard_normal(60_000).astype(np.float32) * 0.05
    pm = ingest(store, _model(tmp_path / "p", base))
    pid = store.put_manifest(pm)
    child_values = base + rng.standard_normal(60_000).astype(np.float32) * 1e-3
    child = _model(tmp_path / "c", child_values)
    exact = ingest(ObjectStore.open(tmp_path / "exact"), child, parents=[])
    options = LossyOptions(max_abs_error=1e-4)
    m = ingest(store, child, parents=[pm], lossy=options)
    mid = store.put_manifest(m)
    assert m.approximate and m.lossy and m.lossy["max_abs_error"] == 1e-4
    assert m.lossy["measured_max_abs_error"] <= 1e-4 * 1.001
    out = tmp_path / "out"
    checkout(store, store.get_manifest(mid), out)
    from safetensors.numpy import load_file

    got = load_file(out / "model.safetensors")
    assert np.max(np.abs(got["w"] - child_values)) <= 1.001e-4
    assert np.array_equal(got["b"], child_values[:16])  # small tensors stay exact
    version = stats(store, {"p": pid, "c": mid}).versions["c"]
    assert version.approximate and version.encodings.get("qdelta") == 1
    assert version.stored_bytes < exact.total_bytes / 3
