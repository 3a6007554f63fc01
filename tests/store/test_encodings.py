"""Every encoding round-trips exactly, over dtypes and shapes (property tests)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lineage.store import codec, objects
from lineage.store.dtypes import cast_bits, itemsize, to_float64, uint_type
from lineage.store.reader import read_bytes

DTYPES = ["F32", "F16", "BF16", "I8", "U8", "I32", "I64", "BOOL", "F64"]
shapes = st.lists(st.integers(0, 7), min_size=0, max_size=3).map(tuple)


@st.composite
def tensor_pairs(draw: st.DrawFn) -> tuple[str, tuple[int, ...], np.ndarray, np.ndarray]:
    """(dtype, shape, bits, related bits): the second is a perturbed copy, like a fine-tune."""
    dtype = draw(st.sampled_from(DTYPES))
    shape = draw(shapes)
    n = math.prod(shape)
    size = itemsize(dtype)
    raw = draw(st.binary(min_size=n * size, max_size=n * size))
    bits = np.frombuffer(raw, dtype=uint_type(size)).copy()
    if dtype == "BOOL":
        bits &= 1
    flips = draw(st.integers(0, 3))
    other = bits.copy()
    if n:
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        idx = rng.integers(0, n, size=min(n, flips + 1))
        other[idx] ^= uint_type(size)(1)
    return dtype, shape, bits, other


def _roundtrip(enc: str, cur: np.ndarray, pred: np.ndarray | None) -> np.ndarray:
    chunks, parts = codec.encode_lossless(enc, cur, pred)
    out = np.empty_like(cur)
    codec.decode_chunks(enc, chunks, memoryview(b"".join(parts)), out, pred)
    return out


@settings(max_examples=120, deadline=None)
@given(tensor_pairs(), st.sampled_from(["plain", "xor", "sub", "mxor"]))
def test_lossless_encodings_roundtrip(case, enc) -> None:
    _, _, cur, base = case
    assert np.array_equal(_roundtrip(enc, cur, None if enc == "plain" else base), cur)


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(["F32", "F16", "BF16", "F64"]),
    st.sampled_from(["F32", "F16", "BF16", "F64"]),
    st.lists(st.floats(-1e4, 1e4, width=32), max_size=40),
    st.sampled_from(["xor", "sub"]),
)
def test_cast_prediction_roundtrips(src, dst, values, enc) -> None:
    base = cast_bits(np.asarray(values, np.float32).view(np.uint32), "F32", src)
    cur = cast_bits(np.asarray(values, np.float32).view(np.uint32), "F32", dst)
    pred = codec.Prediction("x", src, base, 0).for_dtype(dst)
    assert np.array_equal(_roundtrip(enc, cur, pred), cur)


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(["F32", "F16", "BF16"]),
    st.lists(st.floats(-4, 4, width=16), min_size=1, max_size=64),
    st.floats(1e-5, 1e-1),
)
def test_lossy_respects_its_bound(dtype, values, bound) -> None:
    cur = cast_bits(np.asarray(values, np.float32).view(np.uint32), "F32", dtype)
    base = cast_bits((np.asarray(values, np.float32) * 0.9).view(np.uint32), "F32", dtype)
    coded = codec.encode_lossy(cur, base, dtype, 2 * bound)
    assert coded is not None
    chunks, parts, decoded, worst = coded
    out = np.empty_like(cur)
    codec.decode_chunks("qdelta", chunks, memoryview(b"".join(parts)), out, base, 2 * bound, dtype)
    assert np.array_equal(out, decoded)
    values64 = to_float64(cur, dtype)
    # the bound, plus half an ulp of the dtype the values are rounded to
    ulp = {"F32": 2**-23, "F16": 2**-10, "BF16": 2**-7}[dtype]
    slack = bound + np.abs(values64) * ulp + 1e-7
    assert np.all(np.abs(to_float64(out, dtype) - values64) <= slack)
    assert worst == float(np.max(np.abs(to_float64(out, dtype) - values64)))


class _MemStore:
    """Just enough of an ObjectStore for `read_bytes`: a dict of object files."""

    def __init__(self) -> None:
        from lineage.store.backend import DecodedCache

        self.files: dict[str, bytes] = {}
        self.cache = DecodedCache(1 << 20)

    @contextlib.contextmanager
    def read_object(self, oid: str, nbytes: int) -> Iterator[memoryview]:
        assert len(self.files[oid]) <= objects.max_object_bytes(nbytes)
        yield memoryview(self.files[oid])

    def object_id(self, data: bytes) -> str:
        return objects.object_id(data)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tensor_pairs(), st.sampled_from(["plain", "xor", "sub", "mxor"]))
def test_objects_roundtrip_through_the_container(case, enc) -> None:
    dtype, _, cur, base_bits = case
    mem = _MemStore()
    base_id = objects.object_id(base_bits.tobytes())
    chunks, parts = codec.encode_lossless("plain", base_bits, None)
    header = {"kind": "tensor", "dtype": dtype, "n": base_bits.nbytes, "enc": "plain"}
    mem.files[base_id] = b"".join(objects.pack({**header, "chunks": chunks}, parts))
    oid = objects.object_id(cur.tobytes())
    pred = None if enc == "plain" or oid == base_id else base_bits
    chunks, parts = codec.encode_lossless(enc, cur, pred)
    header = {"kind": "tensor", "dtype": dtype, "n": cur.nbytes, "chunks": chunks}
    header["enc"] = enc if pred is not None else "plain"
    if pred is not None:
        header["base"] = base_id
    mem.files[oid] = b"".join(objects.pack(header, parts))
    assert read_bytes(mem, oid, cur.nbytes).tobytes() == cur.tobytes()  # type: ignore[arg-type]


def test_blob_objects_roundtrip() -> None:
    mem = _MemStore()
    for data in (b"", b"x", b"{}" * 1000):
        oid = objects.object_id(data)
        mem.files[oid] = b"".join(objects.blob_parts(data))
        assert read_bytes(mem, oid, len(data)).tobytes() == data  # type: ignore[arg-type]
