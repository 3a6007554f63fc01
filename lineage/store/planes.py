"""Byte-plane split plus zstd: the entropy-coding stage every tensor encoding ends in.

Weights (and deltas of weights) have very different statistics per byte position: the
sign/exponent byte of a float is highly skewed, low mantissa bytes are nearly random.
Splitting elements into byte planes lets the entropy coder see each distribution
separately. Per plane we keep the cheapest of: all-zero (no bytes), raw, or zstd (zstd
gives up on near-random planes, such as the low mantissa bytes of a fine-tune's XOR, at
tens of GB/s, so trying it costs little; raw planes are written straight from the split
buffer without a copy).

zstd runs with "fast" parameters tuned for data with few long matches: on weight planes
they compress as well as level 3 at several times the speed. zstandard releases the GIL,
so chunks are coded in parallel threads.

Splitting and merging planes (fused with the XOR against a base tensor, when there is
one) run in the C kernels of `lineage.store._planes` — one pass over memory at several
GB/s, GIL released — or, where that extension was not built, in the numpy functions
below, which compute the same bytes.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import zstandard

try:
    import lineage.store._planes as _kernels
except ImportError:  # built without a C compiler: the numpy versions below
    _kernels = None  # type: ignore[assignment]

#: planes are coded in chunks of at most this many bytes, so large tensors are coded in
#: parallel and decoded without a second full-size buffer.
CHUNK_BYTES = 4 << 20

ZERO, RAW, ZSTD = 0, 1, 2

_PARAMS = zstandard.ZstdCompressionParameters(
    strategy=zstandard.STRATEGY_FAST, window_log=17, hash_log=10, min_match=7, search_log=1
)


# zstd contexts are not safe to share between threads; keep one of each per thread.
_LOCAL = threading.local()


def _compressor() -> zstandard.ZstdCompressor:
    ctx = getattr(_LOCAL, "c", None)
    if ctx is None:
        ctx = _LOCAL.c = zstandard.ZstdCompressor(compression_params=_PARAMS)
    return ctx


def decompressor() -> zstandard.ZstdDecompressor:
    """This thread's zstd decompression context (made once: it costs more than a small
    plane's decoding)."""
    ctx = getattr(_LOCAL, "d", None)
    if ctx is None:
        ctx = _LOCAL.d = zstandard.ZstdDecompressor()
    return ctx


def _decompress(part: memoryview, count: int) -> np.ndarray:
    # zstandard sizes its output from the frame's declared content size and ignores
    # max_output_size when there is one: check the declaration first, so a corrupt
    # or hostile frame cannot make us allocate more than the plane's `count` bytes.
    declared = zstandard.frame_content_size(part)
    if declared not in (-1, count):
        raise ValueError(f"compressed plane declares {declared} bytes, {count} expected")
    data = decompressor().decompress(part, max_output_size=count)
    if len(data) != count:
        raise ValueError("plane decoded to the wrong length")
    return np.frombuffer(data, np.uint8)


def compiled() -> bool:
    """Whether the C kernels are in use (else the numpy fallback)."""
    return _kernels is not None


#: how a residual is formed from a tensor and its prediction (see `lineage.store.codec`);
#: the numbers are the C kernels' modes.
RESIDUALS = {"xor": 0, "sub": 1, "mxor": 2}


def split(values: np.ndarray, pred: np.ndarray | None = None, residual: str = "xor") -> np.ndarray:
    """Byte planes of a 1-D unsigned array, as a ``(itemsize, n)`` uint8 array (row i holds
    byte i of every element); with `pred`, of the `residual` against it instead."""
    size = values.itemsize
    out = np.empty((size, values.size), dtype=np.uint8)
    if _kernels is not None:
        _kernels.split(values, pred, out, size, RESIDUALS[residual])
        return out
    out[:] = residual_of(values, pred, residual).view(np.uint8).reshape(-1, size).T
    return out


def residual_of(values: np.ndarray, pred: np.ndarray | None, residual: str) -> np.ndarray:
    """The residual of `values` under `pred` (numpy; the C kernels fuse it into `split`)."""
    if pred is None:
        return values
    if residual == "xor":
        xored: np.ndarray = values ^ pred
        return xored
    if residual == "sub":
        return zigzag(np.subtract(values, pred))
    masked: np.ndarray = values ^ pred
    np.copyto(masked, masked.dtype.type(0), where=(values == 0) & (pred != 0))
    return masked


def mask_bits(values: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Packed bits (little bit order) of the elements that are zero where `pred` is not."""
    out = np.empty((values.size + 7) // 8, dtype=np.uint8)
    if _kernels is not None:
        _kernels.mask_bits(values, pred, out, values.itemsize)
        return out
    out[:] = np.packbits((values == 0) & (pred != 0), bitorder="little")
    return out


def zigzag(diff: np.ndarray) -> np.ndarray:
    """Map small signed differences to small unsigned numbers (0, -1, 1, -2 -> 0, 1, 2, 3),
    in place on `diff` (a fresh temporary)."""
    sign = diff.view(_SIGNED[diff.itemsize]) >> (diff.itemsize * 8 - 1)
    np.left_shift(diff, diff.dtype.type(1), out=diff)
    np.bitwise_xor(diff, sign.view(diff.dtype), out=diff)
    return diff


_SIGNED = {1: np.int8, 2: np.int16, 4: np.int32, 8: np.int64}


def merge(
    out: np.ndarray,
    planes: Sequence[bytes | memoryview | np.ndarray | None],
    pred: np.ndarray | None,
    add: bool = False,
) -> None:
    """Fill `out` (1-D unsigned) from its byte planes (None: all zero); then, if `pred`
    is given, XOR it in, or with `add`, read the planes as zigzag residuals and add it."""
    if _kernels is not None:
        _kernels.merge(out, planes, pred, int(add))
        return
    size = out.itemsize
    matrix = out.view(np.uint8).reshape(-1, size)
    for i, plane in enumerate(planes):
        matrix[:, i] = 0 if plane is None else np.frombuffer(plane, dtype=np.uint8)
    if pred is None:
        return
    if add:
        np.add(unzigzag(out), pred, out=out)
    else:
        np.bitwise_xor(out, pred, out=out)


def zero_masked(out: np.ndarray, packed_mask: np.ndarray) -> None:
    """Zero the elements of `out` whose bit is set in `packed_mask` (little bit order)."""
    if _kernels is not None:
        _kernels.zero_masked(out, packed_mask, out.itemsize)
        return
    mask = np.unpackbits(packed_mask, count=out.size, bitorder="little").view(bool)
    np.copyto(out, out.dtype.type(0), where=mask)


def unzigzag(z: np.ndarray) -> np.ndarray:
    """Inverse of the zigzag map (0, 1, 2, 3 -> 0, -1, 1, -2), in place on `z`."""
    one = z.dtype.type(1)
    sign = np.bitwise_and(z, one)
    np.negative(sign, out=sign)  # 0 or all ones (unsigned wrap-around)
    np.right_shift(z, one, out=z)
    np.bitwise_xor(z, sign, out=z)
    return z


def encode_chunk(
    values: np.ndarray, pred: np.ndarray | None = None, residual: str = "xor"
) -> tuple[list[list[int]], list[bytes | memoryview]]:
    """Code one chunk of bit patterns (with `pred`: their `residual` against it); returns
    `[[mode, size], ...]` per plane and the bytes."""
    return encode_planes(split(values, pred, residual))


def encode_planes(rows: np.ndarray) -> tuple[list[list[int]], list[bytes | memoryview]]:
    """Code split planes (a ``(itemsize, n)`` uint8 array, each row contiguous)."""
    compressor = _compressor()
    table: list[list[int]] = []
    parts: list[bytes | memoryview] = []
    for plane in rows:
        # a prefix decides almost every plane without reading the whole of it
        if not plane[:4096].any() and not plane.any():
            table.append([ZERO, 0])
            continue
        packed = compressor.compress(plane)
        if len(packed) < plane.nbytes:
            table.append([ZSTD, len(packed)])
            parts.append(packed)
        else:
            table.append([RAW, plane.nbytes])
            parts.append(memoryview(plane))  # a row of the fresh split: no copy needed
    return table, parts


def decode_chunk(
    table: list[list[int]],
    payload: memoryview,
    count: int,
    out: np.ndarray,
    pred: np.ndarray | None = None,
    add: bool = False,
) -> None:
    """Decode one chunk of `count` elements from `payload` into `out` (unsigned, 1-D),
    with `pred` XORed in (or added to zigzag residuals, with `add`), if given."""
    size = out.itemsize
    if len(table) != size:
        raise ValueError("chunk table does not match the element size")
    planes: list[bytes | memoryview | np.ndarray | None] = []
    pos = 0
    for mode, length in table:
        part = payload[pos : pos + length]
        pos += length
        if mode == ZERO:
            planes.append(None)
        elif mode == RAW:
            if len(part) != count:
                raise ValueError("raw plane has the wrong length")
            planes.append(part)
        else:
            planes.append(_decompress(part, count))
    merge(out, planes, pred, add)


def decode_planes(table: list[list[int]], payload: memoryview, rows: np.ndarray) -> None:
    """Decode a chunk's planes into `rows` (``(itemsize, n)`` uint8, rows contiguous)."""
    size, count = rows.shape
    if len(table) != size:
        raise ValueError("chunk table does not match the element size")
    pos = 0
    for row, (mode, length) in zip(rows, table, strict=True):
        part = payload[pos : pos + length]
        pos += length
        if mode == ZERO:
            row[:] = 0
        elif mode == RAW:
            if len(part) != count:
                raise ValueError("raw plane has the wrong length")
            row[:] = np.frombuffer(part, dtype=np.uint8)
        else:
            row[:] = _decompress(part, count)


def chunk_elements(itemsize: int) -> int:
    """Elements per chunk for a given element size."""
    return max(1, CHUNK_BYTES // itemsize)


def encoded_size(table: list[list[int]]) -> int:
    """Payload bytes a chunk table accounts for."""
    return sum(length for _, length in table)
