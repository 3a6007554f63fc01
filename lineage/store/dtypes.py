"""The safetensors dtypes the store understands, and their numpy bit views.

Every encoding works on the *bit patterns* of a tensor (unsigned integers of the
element's width), so dtypes numpy cannot compute with (bf16, fp8) still round-trip
exactly. Only the cast and lossy encodings need real float semantics.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lineage.errors import WeightsError
from lineage.formats import SAFETENSORS_DTYPE_SIZES

try:  # the store's C kernels: float32 -> float16/bfloat16 several times faster than numpy
    import lineage.store._planes as _kernels
except ImportError:
    _kernels = None  # type: ignore[assignment]

#: element size in bytes for every dtype name safetensors writes that we accept.
ITEMSIZE = SAFETENSORS_DTYPE_SIZES

#: dtypes whose values the cast and lossy encodings may compute with.
FLOATS = frozenset({"F16", "BF16", "F32", "F64"})

_UINT: dict[int, type[np.unsignedinteger[Any]]] = {
    1: np.uint8,
    2: np.uint16,
    4: np.uint32,
    8: np.uint64,
}
_INT: dict[int, type[np.signedinteger[Any]]] = {1: np.int8, 2: np.int16, 4: np.int32, 8: np.int64}


def itemsize(dtype: str) -> int:
    """Bytes per element of `dtype`; `WeightsError` for a dtype the store does not know."""
    try:
        return ITEMSIZE[dtype]
    except KeyError:
        raise WeightsError(
            f"unsupported tensor dtype {dtype!r} (known: {', '.join(sorted(ITEMSIZE))})"
        ) from None


def uint_type(size: int) -> type[np.unsignedinteger]:
    """The unsigned integer type of `size` bytes: the bit-pattern view of an element."""
    return _UINT[size]


def int_type(size: int) -> type[np.signedinteger]:
    """The signed integer type of `size` bytes (used for zigzag differences)."""
    return _INT[size]


def bits(data: np.ndarray | memoryview | bytes, dtype: str) -> np.ndarray:
    """View raw little-endian tensor bytes as unsigned bit patterns (no copy)."""
    return np.frombuffer(data, dtype=uint_type(itemsize(dtype)))


def to_float64(raw: np.ndarray, dtype: str) -> np.ndarray:
    """Decode a float tensor's bit patterns (as uint view) to float64 values."""
    if dtype == "F32":
        return raw.view(np.float32).astype(np.float64)
    if dtype == "F16":
        return raw.view(np.float16).astype(np.float64)
    if dtype == "F64":
        return raw.view(np.float64)
    if dtype == "BF16":
        # bf16 is the top half of an f32: widen by shifting into the high 16 bits.
        return (raw.astype(np.uint32) << np.uint32(16)).view(np.float32).astype(np.float64)
    raise WeightsError(f"dtype {dtype} is not a float type")


def f32_to_bf16_bits(values: np.ndarray) -> np.ndarray:
    """Round float32 values to bf16 bit patterns, nearest-even, as torch does."""
    values = np.ascontiguousarray(values, dtype=np.float32)
    u = values.view(np.uint32)
    # rounding = ((u >> 16) & 1) + 0x7FFF, then (u + rounding) >> 16: in one temporary
    t = np.right_shift(u, np.uint32(16))
    np.bitwise_and(t, np.uint32(1), out=t)
    np.add(t, np.uint32(0x7FFF), out=t)
    np.add(t, u, out=t)
    np.right_shift(t, np.uint32(16), out=t)
    out = t.astype(np.uint16)
    if values.size and np.isnan(values.max()):  # max propagates NaN: one pass, no mask
        nan = np.isnan(values)
        # keep NaNs quiet NaNs instead of letting the rounding carry into the sign.
        out[nan] = ((u[nan] >> np.uint32(16)) | np.uint32(0x40)).astype(np.uint16)
    return out


def from_float(values: np.ndarray, dtype: str) -> np.ndarray:
    """Cast float values (any float dtype) to `dtype` and return its bit patterns."""
    if dtype == "F32":
        return values.astype(np.float32).view(np.uint32)
    if dtype == "F16":
        return values.astype(np.float16).view(np.uint16)
    if dtype == "F64":
        return values.astype(np.float64).view(np.uint64)
    if dtype == "BF16":
        return f32_to_bf16_bits(values)
    raise WeightsError(f"dtype {dtype} is not a float type")


def cast_bits(raw: np.ndarray, src: str, dst: str) -> np.ndarray:
    """Bit patterns of `raw` (a `src` tensor) cast to `dst`, the way torch's `.to()` rounds."""
    if src == "F32" and dst in ("F16", "BF16") and _kernels is not None:
        # the same bits as the numpy path below (the tests compare both)
        out = np.empty(raw.size, dtype=np.uint16)
        _kernels.cast_f32(np.ascontiguousarray(raw), out, dst)
        return out
    if src == "F32":
        values = raw.view(np.float32)
    elif src == "F16":
        values = raw.view(np.float16)
    elif src == "F64":
        values = raw.view(np.float64)
    else:  # BF16 widens to f32 exactly
        values = (raw.astype(np.uint32) << np.uint32(16)).view(np.float32)
    return from_float(values, dst)
