"""A store records the content hash of its ids; stores keyed by SHA-256 keep working."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import blake3
import numpy as np
import pytest

from lineage.errors import StoreError
from lineage.store import ObjectStore, checkout, ingest, verify

from .helpers import f32, same_tree, write_safetensors


def _model(tmp: Path) -> Path:
    rng = np.random.default_rng(3)
    return write_safetensors(
        tmp / "m" / "model.safetensors", {"w": f32(rng.standard_normal(20_000))}
    ).parent


def test_new_store_uses_blake3_ids_and_records_it(tmp_path: Path) -> None:
    store = ObjectStore.open(tmp_path / "objects")
    manifest = ingest(store, _model(tmp_path))
    mid = store.put_manifest(manifest)
    meta = json.loads((tmp_path / "objects" / "store.json").read_text())
    assert meta == {"format": 1, "hash": "blake3"}
    data = (tmp_path / "objects" / "manifests" / f"{mid}.json").read_bytes()
    assert mid == blake3.blake3(data).hexdigest()
    weights = (tmp_path / "m" / "model.safetensors").read_bytes()
    (tensor,) = manifest.files[0].tensors
    assert tensor.object == blake3.blake3(weights[-tensor.nbytes :]).hexdigest()


def test_store_keyed_by_sha256_is_detected_and_still_reads(tmp_path: Path) -> None:
    """A store written before store.json existed (SHA-256 ids) opens, verifies, checks out."""
    root = tmp_path / "objects"
    old = ObjectStore.open(root)
    old._hash_name = "sha256"  # what every store was before BLAKE3: no store.json written
    src = _model(tmp_path)
    mid = old.put_manifest(ingest(old, src))
    assert not (root / "store.json").exists()
    data = (root / "manifests" / f"{mid}.json").read_bytes()
    assert mid == hashlib.sha256(data).hexdigest()

    store = ObjectStore.open(root)
    assert store.hash_name == "sha256"
    assert json.loads((root / "store.json").read_text())["hash"] == "sha256"
    assert verify(store, {"m": mid}).ok
    checkout(store, store.get_manifest(mid), tmp_path / "out")
    assert same_tree(src, tmp_path / "out")
    # new versions in that store keep its hash, so dedup against old objects still works
    again = store.put_manifest(ingest(store, src))
    assert again == mid


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "store.json of the store at .* is garbled"),
        (b'{"format": 1, "hash": "md5"}', "uses hash 'md5'.*upgrade lineage"),
    ],
)
def test_unreadable_or_unknown_store_format_is_one_clear_error(
    tmp_path: Path, content: bytes, message: str
) -> None:
    root = tmp_path / "objects"
    ObjectStore.open(root)
    (root / "store.json").write_bytes(content)
    store = ObjectStore.open(root)
    with pytest.raises(StoreError, match=message):
        ingest(store, _model(tmp_path))
    assert not any((root / "objects").rglob("*")), "nothing is written under a bad format"
