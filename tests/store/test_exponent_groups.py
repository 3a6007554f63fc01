"""`gsub`: a float delta coded in groups of the base's exponent round-trips exactly
(C kernels and numpy alike, byte for byte), is what ingest picks for a fine-tune's
float tensors, and a header whose groups do not match its base is a clean error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file

from lineage.errors import CorruptObjectError
from lineage.store import ObjectStore, checkout, codec, groups, ingest, objects, stats
from lineage.store.dtypes import cast_bits, from_float
from lineage.store.reader import read_bytes

from .helpers import base_and_fine_tune, kernels, same_tree

FLOATS = ["F32", "BF16", "F16", "F64"]


def _tune(values: np.ndarray, dtype: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(base bits, fine-tuned bits): every weight moved by about the same small amount,
    as a few optimizer steps do, over weights spanning many exponents."""
    rng = np.random.default_rng(seed)
    tuned = values + 1e-4 * rng.standard_normal(values.size)
    return from_float(values, dtype), from_float(tuned, dtype)


def _roundtrip(cur: np.ndarray, pred: np.ndarray, dtype: str) -> tuple[np.ndarray, bytes, list]:
    chunks, parts = codec.encode_lossless("gsub", cur, pred, dtype)
    payload = b"".join(parts)
    out = np.empty_like(cur)
    codec.decode_chunks("gsub", chunks, memoryview(payload), out, pred, 0.0, dtype)
    return out, payload, chunks


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(FLOATS),
    st.one_of(st.integers(0, 40), st.integers(4000, 12000)),
    st.integers(0, 2**32 - 1),
    st.sampled_from([1, 64, groups.MIN_GROUP]),
)
def test_gsub_roundtrips_and_both_kernels_agree(dtype, n, seed, min_group) -> None:
    rng = np.random.default_rng(seed)
    values = rng.standard_normal(n) * np.exp(rng.uniform(-12, 2, n))
    pred, cur = _tune(values, dtype, seed)
    if n:
        cur[:: max(1, n // 5)] = rng.integers(0, 2**16, (n - 1) // max(1, n // 5) + 1)  # noise
    results = []
    for use_c in (True, False):
        with kernels(use_c):
            table, parts = groups.encode(cur, pred, dtype, min_group) if n else ({}, [])
            out, payload, _ = _roundtrip(cur, pred, dtype)
            results.append((table, b"".join(parts), payload))
            assert np.array_equal(out, cur)
    assert results[0] == results[1]


def test_a_fine_tune_codes_smaller_in_groups_than_plain_sub() -> None:
    rng = np.random.default_rng(0)
    values = rng.standard_normal(1 << 18) * 0.05
    for dtype in ("F32", "BF16"):
        pred, cur = _tune(values, dtype, 1)
        _, grouped, chunks = _roundtrip(cur, pred, dtype)
        assert len(chunks[0][1]["groups"]) > 3
        _, sub_parts = codec.encode_lossless("sub", cur, pred)
        assert len(grouped) < 0.97 * sum(len(memoryview(p).cast("B")) for p in sub_parts)


@pytest.mark.parametrize("use_c", [True, False])
def test_groups_that_do_not_match_the_base_are_an_error(use_c: bool) -> None:
    rng = np.random.default_rng(2)
    pred, cur = _tune(rng.standard_normal(20_000), "F32", 3)
    chunks, parts = codec.encode_lossless("gsub", cur, pred, "F32")
    payload = memoryview(b"".join(parts))
    other = from_float(rng.standard_normal(20_000) * 1e3, "F32")  # another base
    out = np.empty_like(cur)
    with kernels(use_c), pytest.raises(ValueError, match="groups"):
        codec.decode_chunks("gsub", chunks, payload, out, other, 0.0, "F32")


@pytest.mark.parametrize(
    "forge",
    [
        lambda t: t.update(cuts=[5, 9, 0][: len(t["cuts"])] or [1]),  # not descending
        lambda t: t.update(cuts=[*t["cuts"][:-1], 3]),  # does not end at 0
        lambda t: t["groups"].__setitem__(0, [t["groups"][0][0] + 1, t["groups"][0][1]]),
        lambda t: t.update(groups=t["groups"][:-1]),
        lambda t: t.update(cuts="all"),
        lambda t: t.update(head=t["head"] + 1),  # more than the chunk with its groups
        lambda t: t.update(head=0),
        lambda t: t["head_planes"].pop(),
    ],
)
def test_a_forged_gsub_header_is_a_corrupt_object(tmp_path: Path, forge) -> None:
    store = ObjectStore.open(tmp_path / "s")
    rng = np.random.default_rng(4)
    pred, cur = _tune(rng.standard_normal(30_000), "F32", 5)
    base_chunks, base_parts = codec.encode_lossless("plain", pred, None)
    base_id = store.object_id(pred)
    store.put_object(
        base_id,
        objects.pack(objects.tensor_header("F32", pred.nbytes, "plain", base_chunks), base_parts),
    )
    chunks, parts = codec.encode_lossless("gsub", cur, pred, "F32")
    forge(chunks[0][1])
    header = objects.tensor_header("F32", cur.nbytes, "gsub", chunks, base=base_id, depth=1)
    oid = store.object_id(cur)
    store.put_object(oid, objects.pack(header, parts))
    store.flush()
    store.cache.clear()
    with pytest.raises(CorruptObjectError, match=oid):
        read_bytes(store, oid, cur.nbytes)


def test_gsub_needs_a_float_dtype_and_a_base() -> None:
    bits = np.arange(10_000, dtype=np.uint32)
    with pytest.raises(ValueError, match="float"):
        codec.encode_lossless("gsub", bits, bits, "I32")
    header = {"kind": "tensor", "dtype": "F32", "n": bits.nbytes, "enc": "gsub", "chunks": []}
    with pytest.raises(ValueError, match="without a base"):
        objects.check_tensor_header(header, 0, bits.nbytes)


def test_a_cast_base_predicts_in_groups() -> None:
    rng = np.random.default_rng(6)
    values = rng.standard_normal(50_000)
    base = from_float(values, "F32")
    tuned = from_float(values + 1e-3 * rng.standard_normal(values.size), "BF16")
    pred = cast_bits(base, "F32", "BF16")
    out, _, _ = _roundtrip(tuned, pred, "BF16")
    assert np.array_equal(out, tuned)


def test_ingest_codes_a_fine_tune_in_groups_and_checks_it_out_exactly(tmp_path: Path) -> None:
    base, tuned = base_and_fine_tune(tmp_path, layers=2, seed=7)
    store = ObjectStore.open(tmp_path / "s")
    parent = ingest(store, base)
    ids = {"base": store.put_manifest(parent)}
    ids["tuned"] = store.put_manifest(ingest(store, tuned, parents=[parent]))
    assert stats(store, ids).versions["tuned"].encodings == {"gsub": 2}
    store.cache.clear()
    checkout(store, store.get_manifest(ids["tuned"]), tmp_path / "out")
    assert same_tree(tuned, tmp_path / "out")


def test_a_delta_grouping_cannot_shrink_stays_plain_sub(tmp_path: Path) -> None:
    """One or two last-place steps on every weight, whatever its exponent: grouping
    would cost time and save nothing, and the sample says so."""
    rng = np.random.default_rng(8)
    base = rng.standard_normal(1 << 16).astype(np.float32)
    nudged = (base.view(np.uint32) + rng.integers(-2, 3, base.size).astype(np.uint32)).view(
        np.float32
    )
    for name, weights in (("base", base), ("nudged", nudged)):
        (tmp_path / name).mkdir()
        save_file({"w": weights}, str(tmp_path / name / "model.safetensors"))
    assert groups.sample_gain(nudged.view(np.uint32), base.view(np.uint32), "F32") < (
        groups.MIN_GAIN_BITS
    )
    store = ObjectStore.open(tmp_path / "s")
    parent = ingest(store, tmp_path / "base")
    ids = {"base": store.put_manifest(parent)}
    ids["nudged"] = store.put_manifest(ingest(store, tmp_path / "nudged", parents=[parent]))
    assert stats(store, ids).versions["nudged"].encodings == {"sub": 1}
