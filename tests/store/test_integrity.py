"""Corruption is detected and named; killed or concurrent ingests leave the store sound."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from lineage.errors import CorruptObjectError, MissingObjectError
from lineage.store import ObjectStore, checkout, ingest, verify

from .helpers import f32, same_tree, write_safetensors


def _flip_bit(path: Path, offset_from_end: int = 10) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) - offset_from_end] ^= 0x04
    path.write_bytes(bytes(data))


def _model(tmp: Path, seed: int = 0, n: int = 50_000) -> Path:
    rng = np.random.default_rng(seed)
    return write_safetensors(
        tmp / f"m{seed}" / "model.safetensors",
        {"w": f32(rng.standard_normal(n)), "b": f32(rng.standard_normal(8))},
    ).parent


def test_flipped_bit_is_detected_by_checkout_and_verify(store: ObjectStore, tmp_path: Path):
    base = ingest(store, _model(tmp_path))
    bid = store.put_manifest(base)
    rng = np.random.default_rng(0)
    child_dir = write_safetensors(
        tmp_path / "child" / "model.safetensors",
        {"w": f32(rng.standard_normal(50_000) + 1e-4), "b": f32(rng.standard_normal(8))},
    ).parent
    cid = store.put_manifest(ingest(store, child_dir, parents=[base]))
    big = max(base.tensors(), key=lambda ft: ft[1].nbytes)[1].object
    _flip_bit(store.root / store.object_key(big))  # type: ignore[attr-defined]
    store.cache.clear()
    with pytest.raises(CorruptObjectError, match=rf"m@1: .*{big}"):
        checkout(store, store.get_manifest(bid), tmp_path / "out", label="m@1")
    assert not (tmp_path / "out" / "model.safetensors").exists()  # no wrong bytes
    report = verify(store, {"m@1": bid, "m@2": cid})
    assert not report.ok
    assert report.versions["m@1"].corrupt[0]["object"] == big
    assert any(big in line for line in report.problems())
    assert report.to_dict()["ok"] is False


def test_missing_object_is_named(store: ObjectStore, tmp_path: Path):
    m = ingest(store, _model(tmp_path))
    mid = store.put_manifest(m)
    victim = m.files[0].tensors[0].object
    store.delete_object(victim)
    store.cache.clear()
    report = verify(store, {"m@1": mid})
    assert report.versions["m@1"].missing == [victim]
    with pytest.raises(MissingObjectError, match=victim):
        checkout(store, m, tmp_path / "out", label="m@1")


_INGEST = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from lineage.store import ObjectStore, ingest
    from lineage.store import objects
    store = ObjectStore.open(sys.argv[1], workers=1)
    if sys.argv[3] == "slow":
        real = store.put_object
        def slow(oid, parts):
            time.sleep(0.5)
            real(oid, parts)
        store.put_object = slow
    m = ingest(store, Path(sys.argv[2]))
    print(store.put_manifest(m))
    """
)


def test_killed_ingest_leaves_nothing_visible(tmp_path: Path):
    root = tmp_path / "store"
    model = write_safetensors(
        tmp_path / "m" / "model.safetensors",
        {f"t{i}": f32(np.random.default_rng(i).standard_normal(20_000)) for i in range(8)},
    ).parent
    proc = subprocess.Popen([sys.executable, "-c", _INGEST, str(root), str(model), "slow"])
    time.sleep(2.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    store = ObjectStore.open(root)
    assert not list(store.iter_manifests())  # nothing visible
    for entry in store.iter_objects():  # whatever objects landed are whole and correct
        from lineage.store.reader import read_bytes

        read_bytes(store, entry.key, int(store.object_header(entry.key)["n"]))
    m = ingest(store, model)  # the next add works
    checkout(store, store.get_manifest(store.put_manifest(m)), tmp_path / "out")
    assert same_tree(model, tmp_path / "out")


def test_two_processes_adding_at_once(tmp_path: Path):
    root = tmp_path / "store"
    models = [_model(tmp_path, seed) for seed in (1, 2)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _INGEST, str(root), str(m), "fast"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for m in models
    ]
    ids = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    store = ObjectStore.open(root)
    assert verify(store, {"a": ids[0], "b": ids[1]}).ok
    for i, (mid, model) in enumerate(zip(ids, models, strict=True)):
        checkout(store, store.get_manifest(mid), tmp_path / f"out{i}")
        assert same_tree(model, tmp_path / f"out{i}")
