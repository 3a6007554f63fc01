"""The C plane kernels and their numpy fallback compute the same bytes, and every
encoding round-trips through either (property tests)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lineage.store import codec, dtypes, planes
from lineage.store.dtypes import uint_type

from .helpers import kernels

COMPILED = planes._kernels


def test_kernels_are_built_in_ci() -> None:
    """CI builds the extension (a C compiler is there); elsewhere numpy takes over."""
    if COMPILED is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("lineage.store._planes was not built (CI=true: gcc is installed)")
        pytest.skip("lineage.store._planes not built here: the numpy fallback is in use")
    assert planes.compiled()


# lengths around the AVX2 kernels' block sizes (8 and 16 elements) and their tails
lengths = st.one_of(st.integers(0, 40), st.integers(1000, 1100))


@st.composite
def arrays(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    size = draw(st.sampled_from([1, 2, 4, 8]))
    n = draw(lengths)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = uint_type(size)
    cur = rng.integers(0, 256, n * size, dtype=np.uint8).view(kind)
    pred = rng.integers(0, 256, n * size, dtype=np.uint8).view(kind)
    return cur, pred


@pytest.mark.skipif(COMPILED is None, reason="lineage.store._planes not built")
@settings(max_examples=150, deadline=None)
@given(arrays(), st.booleans(), st.booleans(), st.lists(st.booleans(), min_size=8, max_size=8))
def test_c_kernels_match_numpy(case, with_pred, add, zero_planes) -> None:
    cur, pred_all = case
    pred = pred_all if with_pred else None
    cur = cur.copy()
    if cur.size:
        cur[:: max(1, cur.size // 7)] = 0  # zeros where the prediction is not: mxor's mask
    results = []
    for use_c in (True, False):
        with kernels(use_c):
            splits = [planes.split(cur, pred, residual) for residual in planes.RESIDUALS]
            parts = [None if zero_planes[i] else splits[0][i] for i in range(cur.itemsize)]
            merged = np.empty_like(cur)
            planes.merge(merged, parts, pred, add)
            mask = np.packbits(cur % 3 == 0, bitorder="little")
            masked = cur.copy()
            planes.zero_masked(masked, mask)
            bits = None if pred is None else planes.mask_bits(cur, pred)
        results.append((splits, merged, masked, bits))
    (c_splits, c_merged, c_masked, c_bits), (n_splits, n_merged, n_masked, n_bits) = results
    for c_split, n_split in zip(c_splits, n_splits, strict=True):
        assert np.array_equal(c_split, n_split)
    assert np.array_equal(c_merged, n_merged)
    assert np.array_equal(c_masked, n_masked)
    assert (c_bits is None) == (n_bits is None)
    if c_bits is not None:
        assert np.array_equal(c_bits, n_bits)
    expected = cur if pred is None else cur ^ pred
    assert np.array_equal(n_splits[0], expected.view(np.uint8).reshape(-1, cur.itemsize).T)


@settings(max_examples=80, deadline=None)
@given(arrays(), st.sampled_from(["plain", "xor", "sub", "mxor"]), st.booleans())
def test_encodings_roundtrip_with_either_kernel(case, enc, use_c) -> None:
    cur, base = case
    cur = cur.copy()
    if cur.size:
        cur[:: max(1, cur.size // 5)] = 0  # zeros where the base is not: mxor's mask
    pred = None if enc == "plain" else base
    with kernels(use_c and COMPILED is not None):
        chunks, parts = codec.encode_lossless(enc, cur, pred)
        out = np.empty_like(cur)
        codec.decode_chunks(enc, chunks, memoryview(b"".join(parts)), out, pred)
    assert np.array_equal(out, cur)


SPECIAL_F32 = [
    0x00000000,
    0x80000000,
    0x00000001,
    0x3F800000,  # zeros, f32 subnormal, one
    0x7F800000,
    0xFF800000,
    0x7FC00000,
    0x7F800001,
    0x7FA00000,
    0xFFC00001,  # inf, NaNs
    0x477FE000,
    0x477FEFFF,
    0x477FF000,
    0x477FFFFF,  # around the f16 maximum (65504)
    0x33000000,
    0x33000001,
    0x32FFFFFF,
    0x387FC000,
    0x38800000,  # f16 subnormal edges
    0x3F808000,
    0x3F818000,
    0x3F807FFF,  # bf16 ties: to even, up, below
]


@pytest.mark.skipif(COMPILED is None, reason="lineage.store._planes not built")
@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 600), st.sampled_from(["F16", "BF16"]))
def test_c_casts_match_numpy_bit_for_bit(seed, n, target) -> None:
    rng = np.random.default_rng(seed)
    bits = np.concatenate(
        [
            np.array(SPECIAL_F32, dtype=np.uint32),
            rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32),  # any pattern
            rng.normal(0, 0.05, n).astype(np.float32).view(np.uint32),  # weight-like
        ]
    )
    fast = dtypes.cast_bits(bits, "F32", target)
    saved, dtypes._kernels = dtypes._kernels, None
    try:
        with np.errstate(all="ignore"):
            reference = dtypes.cast_bits(bits, "F32", target)
    finally:
        dtypes._kernels = saved
    assert np.array_equal(fast, reference)


@pytest.mark.skipif(COMPILED is None, reason="lineage.store._planes not built")
def test_kernels_reject_mismatched_buffers() -> None:
    out = np.empty(10, np.uint32)
    with pytest.raises(ValueError, match="plane"):
        COMPILED.merge(out, [b"x" * 9, None, None, None], None)
    with pytest.raises(ValueError, match="prediction"):
        COMPILED.merge(out, [None] * 4, np.zeros(9, np.uint32))
    with pytest.raises(ValueError, match="mode"):
        COMPILED.merge(out, [None] * 4, None, 7)
    with pytest.raises(ValueError, match="element size"):
        COMPILED.split(np.zeros(10, np.uint8), None, np.empty(9, np.uint8), 4)
    with pytest.raises(ValueError, match="element size must be"):
        COMPILED.split(np.zeros(9, np.uint8), None, np.empty(9, np.uint8), 3)
    with pytest.raises(ValueError, match="mode"):
        COMPILED.split(np.zeros(8, np.uint8), None, np.empty(8, np.uint8), 4, 9)
    with pytest.raises(ValueError, match="element size"):
        COMPILED.mask_bits(np.zeros(8, np.uint8), np.zeros(8, np.uint8), np.empty(9, np.uint8), 4)
    with pytest.raises(ValueError, match="mask"):
        COMPILED.zero_masked(out, np.zeros(1, np.uint8), 4)
    with pytest.raises(TypeError):
        COMPILED.merge(b"read-only", [None], None)
    with pytest.raises(ValueError, match="target"):
        COMPILED.cast_f32(np.zeros(4, np.uint32), np.empty(4, np.uint16), "F64")
    with pytest.raises(ValueError, match="length"):
        COMPILED.cast_f32(np.zeros(4, np.uint32), np.empty(3, np.uint16), "F16")
