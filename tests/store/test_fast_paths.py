"""The speed-minded paths keep every guarantee: zero-mask deltas of pruned tensors,
zero-residual copies, the bf16 rounding, and parallel checkout that leaves nothing
half-written on failure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lineage.errors import CorruptObjectError
from lineage.store import ObjectStore, checkout, codec, ingest, stats
from lineage.store.dtypes import f32_to_bf16_bits

from .helpers import f32, same_tree, write_safetensors


def _roundtrip(enc: str, cur: np.ndarray, pred: np.ndarray | None) -> np.ndarray:
    chunks, parts = codec.encode_lossless(enc, cur, pred)
    out = np.empty_like(cur)
    codec.decode_chunks(enc, chunks, memoryview(b"".join(parts)), out, pred)
    return out


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 5000),
    st.floats(0.0, 1.0),
    st.sampled_from([np.uint8, np.uint16, np.uint32, np.uint64]),
    st.integers(0, 2**32 - 1),
)
def test_masked_xor_roundtrips_pruned_tensors(n, fraction, dtype, seed) -> None:
    rng = np.random.default_rng(seed)
    pred = rng.integers(0, np.iinfo(dtype).max, size=n, dtype=dtype, endpoint=True)
    cur = pred.copy()
    cur[rng.random(n) < fraction] = 0  # pruned
    cur[rng.random(n) < 0.01] ^= 1  # and a few other changes
    assert np.array_equal(_roundtrip("mxor", cur, pred), cur)


def test_masked_xor_spans_several_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    from lineage.store import planes

    monkeypatch.setattr(planes, "CHUNK_BYTES", 1024)
    rng = np.random.default_rng(1)
    pred = rng.integers(1, 2**32, size=10_000, dtype=np.uint32)
    cur = np.where(rng.random(10_000) < 0.3, 0, pred).astype(np.uint32)
    chunks, _ = codec.encode_lossless("mxor", cur, pred)
    assert chunks[0][0] == "mask" and len(chunks[0][1]) > 1
    assert np.array_equal(_roundtrip("mxor", cur, pred), cur)


def test_zero_residual_decodes_to_the_prediction() -> None:
    rng = np.random.default_rng(2)
    pred = rng.integers(0, 2**16, size=5000, dtype=np.uint16)
    for enc in ("xor", "mxor"):
        assert np.array_equal(_roundtrip(enc, pred.copy(), pred), pred)


def test_bf16_rounding_matches_the_reference() -> None:
    rng = np.random.default_rng(3)
    values = np.concatenate(
        [
            rng.standard_normal(10_000).astype(np.float32),
            np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 3.4e38], np.float32),
            rng.integers(0, 2**32, 2000, dtype=np.uint32).view(np.float32),  # NaN payloads too
        ]
    )
    u = values.view(np.uint32)
    rounding = ((u >> np.uint32(16)) & np.uint32(1)) + np.uint32(0x7FFF)
    want = ((u + rounding) >> np.uint32(16)).astype(np.uint16)
    nan = np.isnan(values)
    want[nan] = ((u[nan] >> np.uint32(16)) | np.uint32(0x40)).astype(np.uint16)
    assert np.array_equal(f32_to_bf16_bits(values), want)


def test_pruned_child_is_stored_as_a_mask(store: ObjectStore, tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    w = rng.standard_normal((256, 128)).astype(np.float32)
    parent_dir = write_safetensors(tmp_path / "p" / "model.safetensors", {"w": f32(w)}).parent
    pruned = np.where(np.abs(w) < np.quantile(np.abs(w), 0.3), np.float32(0), w)
    child_dir = write_safetensors(tmp_path / "c" / "model.safetensors", {"w": f32(pruned)}).parent
    parent = ingest(store, parent_dir)
    pid = store.put_manifest(parent)
    cid = store.put_manifest(ingest(store, child_dir, parents=[parent]))
    report = stats(store, {"p": pid, "c": cid})
    assert report.versions["c"].encodings == {"mxor": 1}
    assert report.versions["c"].stored_bytes < w.nbytes / 20
    store.cache.clear()
    checkout(store, store.get_manifest(cid), tmp_path / "out")
    assert same_tree(child_dir, tmp_path / "out")


def test_failed_checkout_leaves_no_file_behind(store: ObjectStore, tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    src = write_safetensors(
        tmp_path / "m" / "model.safetensors",
        {f"t{i}": f32(rng.standard_normal(20_000)) for i in range(6)},
    ).parent
    (src / "config.json").write_text("{}")
    m = ingest(store, src)
    mid = store.put_manifest(m)
    victim = m.files[-1].tensors[3].object
    path = store.root / store.object_key(victim)  # type: ignore[attr-defined]
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x10
    path.write_bytes(bytes(data))
    store.cache.clear()
    out = tmp_path / "out"
    with pytest.raises(CorruptObjectError, match=victim):
        checkout(store, store.get_manifest(mid), out, label="m@1")
    assert not any(p.is_file() for p in out.rglob("*"))  # neither real names nor temps
