"""Windows of a stored tensor read from byte ranges equal the same elements of a full
decode, for every encoding, across chunks, through delta chains and casts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lineage.errors import CorruptObjectError
from lineage.store import ObjectStore, codec, objects, planes, windows
from lineage.store.dtypes import cast_bits
from lineage.store.reader import read_bytes
from lineage.store.windows import read_windows


def _put(
    store: ObjectStore,
    bits: np.ndarray,
    dtype: str,
    enc: str,
    base: str | None = None,
    base_bits: np.ndarray | None = None,
    base_dtype: str | None = None,
) -> str:
    oid = store.object_id(bits)
    pred = None
    if base_bits is not None:
        pred = (
            base_bits if base_dtype == dtype else cast_bits(base_bits, base_dtype or dtype, dtype)
        )
    if enc == "qdelta":
        coded = codec.encode_lossy(bits, pred, dtype, 1e-3)
        assert coded is not None
        chunks, parts, decoded, _ = coded
        oid = store.object_id(decoded)
        header = objects.tensor_header(
            dtype, bits.nbytes, enc, chunks, base=base, base_dtype=base_dtype, step=1e-3
        )
    else:
        chunks, parts = codec.encode_lossless(enc, bits, pred, dtype)
        header = objects.tensor_header(
            dtype, bits.nbytes, enc, chunks, base=base, base_dtype=base_dtype
        )
    store.put_object(oid, objects.pack(header, parts))
    store.flush()
    return oid


@pytest.mark.parametrize("enc", ["plain", "xor", "sub", "gsub", "mxor", "qdelta"])
@pytest.mark.parametrize("cast", [False, True])
def test_windows_match_a_full_decode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, enc: str, cast: bool
) -> None:
    monkeypatch.setattr(planes, "CHUNK_BYTES", 64 << 10)  # several chunks from a small tensor
    store = ObjectStore.open(tmp_path / "s")
    rng = np.random.default_rng(0)
    values = rng.standard_normal(100_000).astype(np.float32)
    base_dtype = "F32" if cast else "BF16"
    base_bits = values.view(np.uint32) if cast else cast_bits(values.view(np.uint32), "F32", "BF16")
    base_id = _put(store, base_bits, base_dtype, "plain")
    tuned = values * (1 + 1e-3 * rng.standard_normal(values.size)).astype(np.float32)
    tuned[rng.random(values.size) < 0.3] = 0  # zeros for the mask
    cur = cast_bits(tuned.view(np.uint32), "F32", "BF16")
    oid = _put(
        store,
        cur,
        "BF16",
        enc,
        base=None if enc == "plain" else base_id,
        base_bits=None if enc == "plain" else base_bits,
        base_dtype=base_dtype,
    )
    store.cache.clear()
    full = read_bytes(store, oid, cur.nbytes).view(np.uint16)
    store.cache.clear()
    picks = codec.sample_picks(cur.size, 2)
    assert len({p.start // planes.chunk_elements(2) for p in picks}) == 3  # three chunks
    got = read_windows(ObjectStore.open(tmp_path / "s"), oid, cur.nbytes, picks)
    assert np.array_equal(got, np.concatenate([full[p] for p in picks]))
    # windows that start inside a chunk, and a zstd prefix cut too short (re-read whole)
    monkeypatch.setattr(windows, "ZSTD_BLOCK", 0)
    inner = [slice(100, 900), slice(40_000, 40_100)]
    got = read_windows(ObjectStore.open(tmp_path / "s"), oid, cur.nbytes, inner)
    assert np.array_equal(got, np.concatenate([full[p] for p in inner]))


def test_a_truncated_object_is_a_corrupt_candidate(tmp_path: Path) -> None:
    store = ObjectStore.open(tmp_path / "s")
    bits = np.random.default_rng(1).integers(0, 1 << 16, 50_000, dtype=np.uint16)
    oid = _put(store, bits, "BF16", "plain")
    path = tmp_path / "s" / store.object_key(oid)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CorruptObjectError, match=oid):
        read_windows(ObjectStore.open(tmp_path / "s"), oid, bits.nbytes, [slice(0, 2048)])
