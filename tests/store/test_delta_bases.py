"""Which stored tensors a new version is delta-coded against (issue 14, section 1).

A committed next version (an upstream update, a continued fine-tune) is coded against
its predecessor; per tensor the best of several candidate bases wins; chains stay within
the workspace's `delta_chain_depth` without falling back to full copies.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from lineage.ops.add import add, commit
from lineage.ops.checkout import checkout
from lineage.store import ObjectStore, ingest, stats
from lineage.store import checkout as store_checkout
from lineage.workspace import Workspace

from .helpers import same_tree

ELEMENTS = 1 << 16


def _weights(path: Path, tensors: dict[str, np.ndarray]) -> Path:
    path.mkdir(parents=True)
    save_file(tensors, str(path / "model.safetensors"))
    (path / "config.json").write_text('{"model_type": "toy"}\n')
    return path


def _random(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"layer.{i}.weight": rng.standard_normal(ELEMENTS).astype(np.float32) for i in range(3)}


def _nudged(tensors: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        k: (v * (1 + 1e-3 * rng.standard_normal(v.size))).astype(np.float32)
        for k, v in tensors.items()
    }


def _encodings(ws: Workspace, ref: str) -> dict[str, int]:
    return stats(ws.store, {ref: ws.resolve(ref).manifest_id}).versions[ref].encodings


def test_a_committed_upstream_update_is_a_delta_of_its_predecessor(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    first = _random(0)
    add(ws, "base", source=_weights(tmp_path / "v1", first))
    update = _weights(tmp_path / "v2", _nudged(first, 1))
    commit(ws, "base", source=update)  # no derivation parent: only the predecessor
    assert _encodings(ws, "base@2").get("plain", 0) == 0, _encodings(ws, "base@2")
    report = stats(ws.store, {v.ref: v.manifest_id for v in reversed(ws.log("base"))})
    assert report.versions["base@2"].stored_bytes < 0.75 * report.versions["base@1"].stored_bytes
    ws.store.cache.clear()
    checkout(ws, "base@2", tmp_path / "out")
    assert same_tree(update, tmp_path / "out")


def test_a_continued_fine_tune_uses_its_predecessor_not_only_its_parent(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    base = _random(0)
    add(ws, "base", source=_weights(tmp_path / "b", base))
    tuned = {
        k: (v + 0.05 * np.random.default_rng(2).standard_normal(v.size)).astype(np.float32)
        for k, v in base.items()
    }
    add(ws, "ft", source=_weights(tmp_path / "ft1", tuned), parents=["base@1"], kind="finetune")
    commit(ws, "ft", source=_weights(tmp_path / "ft2", _nudged(tuned, 3)))
    manifest = ws.manifest("ft@2")
    previous = {t.name: t.object for _, t in ws.manifest("ft@1").tensors()}
    for _, tensor in manifest.tensors():
        assert ws.store.object_header(tensor.object).get("base") == previous[tensor.name]


def test_each_tensor_takes_its_best_base_among_several(tmp_path: Path) -> None:
    store = ObjectStore.open(tmp_path / "objects")
    a, b = _random(0), _random(1)
    ma = ingest(store, _weights(tmp_path / "a", a))
    mb = ingest(store, _weights(tmp_path / "b", b))
    store.put_manifest(ma), store.put_manifest(mb)
    mixed = _nudged(
        {
            "layer.0.weight": a["layer.0.weight"],
            "layer.1.weight": b["layer.1.weight"],
            "layer.2.weight": a["layer.2.weight"],
        },
        4,
    )
    mm = ingest(store, _weights(tmp_path / "mixed", mixed), parents=[ma, mb])
    want = {"layer.0.weight": ma, "layer.1.weight": mb, "layer.2.weight": ma}
    for _, tensor in mm.tensors():
        expected = {t.name: t.object for _, t in want[tensor.name].tensors()}[tensor.name]
        assert store.object_header(tensor.object).get("base") == expected, tensor.name
    store.cache.clear()
    store_checkout(store, mm, tmp_path / "out")
    assert same_tree(tmp_path / "mixed", tmp_path / "out")


def test_chains_stay_within_the_configured_depth_without_full_copies(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    config = ws.lineage_dir / "config.toml"
    config.write_text(
        re.sub(r"delta_chain_depth = \d+", "delta_chain_depth = 2", config.read_text())
    )
    ws = Workspace.open(tmp_path / "ws")
    tensors = _random(0)
    add(ws, "m", source=_weights(tmp_path / "v1", tensors))
    for n in range(2, 7):
        tensors = _nudged(tensors, n)
        commit(ws, "m", source=_weights(tmp_path / f"v{n}", tensors))
        assert _encodings(ws, f"m@{n}").get("plain", 0) == 0, (n, _encodings(ws, f"m@{n}"))
    depths = [
        int(ws.store.object_header(t.object).get("depth", 0))
        for v in ws.log("m")
        for _, t in ws.manifest(v.ref).tensors()
    ]
    assert max(depths) == 2
    ws.store.cache.clear()
    checkout(ws, "m@6", tmp_path / "out")
    assert load_file(str(tmp_path / "out" / "model.safetensors")).keys() == tensors.keys()
    assert same_tree(tmp_path / "v6", tmp_path / "out")
