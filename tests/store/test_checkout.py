"""Ingest + checkout of real Hugging Face models: bit-exact, loadable, delta-compressed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from lineage.store import (
    ObjectStore,
    checkout,
    diff_manifests,
    find_similar,
    ingest,
    stats,
)

from .helpers import same_tree


def _finetune(src: Path, dst: Path, scale: float = 1e-3, seed: int = 1) -> Path:
    """A copy of `src` whose float tensors moved a little, as a short fine-tune would."""
    shutil.copytree(src, dst)
    tensors = load_file(src / "model.safetensors")
    rng = np.random.default_rng(seed)
    moved = {
        k: (v + rng.standard_normal(v.shape).astype(v.dtype) * scale * v.std()).astype(v.dtype)
        if v.dtype == np.float32 and v.size > 1
        else v
        for k, v in tensors.items()
    }
    save_file(moved, dst / "model.safetensors", metadata={"format": "pt"})
    return dst


def test_checkout_is_bit_exact_and_loads(store: ObjectStore, tiny_bert: Path, tmp_path: Path):
    from transformers import BertModel

    manifest = ingest(store, tiny_bert)
    mid = store.put_manifest(manifest)
    store.cache.clear()
    out = tmp_path / "out"
    seen: list[tuple[int, int]] = []
    checkout(store, store.get_manifest(mid), out, progress=lambda d, t: seen.append((d, t)))
    assert same_tree(tiny_bert, out)
    assert seen[-1][0] == seen[-1][1] == manifest.total_bytes
    assert "extra/notes.md" in {f.path for f in manifest.files}
    BertModel.from_pretrained(out)  # transformers loads the checkout unchanged


def test_manifest_json_roundtrip(store: ObjectStore, tiny_bert: Path):
    manifest = ingest(store, tiny_bert)
    mid = store.put_manifest(manifest)
    again = store.get_manifest(mid)
    assert again == manifest
    json.dumps(again.to_dict())
    st = next(f for f in again.files if f.kind == "safetensors")
    assert st.header_object and all(t.object and t.nbytes >= 0 for t in st.tensors)


def test_exact_dedup_stores_nothing_new(store: ObjectStore, tiny_bert: Path, tmp_path: Path):
    a = store.put_manifest(ingest(store, tiny_bert))
    before = sum(e.size for e in store.iter_objects())
    copy = shutil.copytree(tiny_bert, tmp_path / "copy")
    b = store.put_manifest(ingest(store, copy))
    assert sum(e.size for e in store.iter_objects()) == before
    report = stats(store, {"a": a, "b": b}).to_dict()
    assert report["versions"]["b"]["stored_bytes"] == 0
    assert report["versions"]["b"]["encodings"]["dedup"] > 0


def test_delta_against_parent_is_smaller_and_exact(
    store: ObjectStore, tiny_bert: Path, tmp_path: Path
):
    parent = ingest(store, tiny_bert)
    pid = store.put_manifest(parent)
    child_dir = _finetune(tiny_bert, tmp_path / "child")
    plain_store = ObjectStore.open(tmp_path / "plain")
    alone = ingest(plain_store, child_dir)
    child = ingest(store, child_dir, parents=[parent])
    cid = store.put_manifest(child)
    report = stats(store, {"p": pid, "c": cid})
    solo = stats(plain_store, {"c": plain_store.put_manifest(alone)})
    assert report.versions["c"].stored_bytes < 0.8 * solo.stored_bytes
    assert {"xor", "sub"} & set(report.versions["c"].encodings)
    store.cache.clear()
    checkout(store, store.get_manifest(cid), tmp_path / "out")
    assert same_tree(child_dir, tmp_path / "out")


def test_prefix_matching_and_fp16_cast(store: ObjectStore, tiny_bert: Path, tmp_path: Path):
    parent = ingest(store, tiny_bert)
    pid = store.put_manifest(parent)
    tensors = load_file(tiny_bert / "model.safetensors")
    half = {
        f"bert.{k}": (v.astype(np.float16) if v.dtype == np.float32 else v)
        for k, v in tensors.items()
    }
    variant = tmp_path / "fp16"
    variant.mkdir()
    save_file(half, variant / "model.safetensors")
    child = ingest(store, variant, parents=[parent])
    cid = store.put_manifest(child)
    report = stats(store, {"p": pid, "c": cid})
    assert (
        report.versions["c"].encodings.get("cast+xor", 0)
        + report.versions["c"].encodings.get("cast+sub", 0)
        > 0
    )
    # casts predicted exactly: the child costs a small fraction of its size
    assert report.versions["c"].stored_bytes < 0.1 * report.versions["c"].logical_bytes
    store.cache.clear()
    checkout(store, store.get_manifest(cid), tmp_path / "out")
    assert same_tree(variant, tmp_path / "out")


def test_single_file_and_bounded_chains(tmp_path: Path, tiny_bert: Path):
    store = ObjectStore.open(tmp_path / "s", max_chain_depth=2)
    parents = []
    src = tiny_bert
    for i in range(4):
        src = _finetune(src, tmp_path / f"gen{i}", seed=i)
        m = ingest(store, src / "model.safetensors", parents=parents[-1:])
        store.put_manifest(m)
        parents.append(m)
    depths = [int(store.object_header(e.key).get("depth", 0)) for e in store.iter_objects()]
    assert max(depths) <= 2
    store.cache.clear()
    checkout(store, parents[-1], tmp_path / "out")
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == (
        src / "model.safetensors"
    ).read_bytes()


def test_diff_and_similar(store: ObjectStore, tiny_bert: Path, tmp_path: Path):
    parent = ingest(store, tiny_bert)
    pid = store.put_manifest(parent)
    child_dir = _finetune(tiny_bert, tmp_path / "child")
    config = json.loads((child_dir / "config.json").read_text())
    config["hidden_dropout_prob"] = 0.2
    (child_dir / "config.json").write_text(json.dumps(config))
    child = ingest(store, child_dir, parents=[parent])
    report = diff_manifests(store, parent, child).to_dict()
    assert report["changed"] and all(0 < c["relative_l2"] < 0.01 for c in report["changed"])
    assert report["identical"]  # ints and 1-element tensors are untouched
    keys = [c["key"] for c in report["config"]["config.json"]]
    assert "hidden_dropout_prob" in keys
    other = _finetune(tiny_bert, tmp_path / "unrelated", scale=50.0, seed=7)
    oid = store.put_manifest(ingest(store, other))
    ranked = find_similar(store, child_dir, {"base@1": pid, "other@1": oid})
    assert ranked[0][0] == "base@1" and ranked[0][1] > 0.5
    assert dict(ranked).get("other@1", 0.0) < ranked[0][1]


@pytest.mark.parametrize("workers", [1, 3])
def test_worker_counts_agree(tmp_path: Path, tiny_bert: Path, workers: int):
    store = ObjectStore.open(tmp_path / "s", workers=workers)
    m = ingest(store, tiny_bert)
    checkout(store, m, tmp_path / "out")
    assert same_tree(tiny_bert, tmp_path / "out")
