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
"""

from __future__ import annotations

import threading

import numpy as np
import zstandard

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


def _decompress(part: memoryview, count: int) -> np.ndarray:
    ctx = getattr(_LOCAL, "d", None)
    if ctx is None:
        ctx = _LOCAL.d = zstandard.ZstdDecompressor()
    data = ctx.decompress(part, max_output_size=count)
    if len(data) != count:
        raise ValueError("plane decoded to the wrong length")
    return np.frombuffer(data, np.uint8)


def split(values: np.ndarray) -> list[np.ndarray]:
    """Byte planes of a 1-D unsigned array: plane i holds byte i of every element."""
    size = values.itemsize
    if size == 1:
        return [values.view(np.uint8)]
    matrix = values.view(np.uint8).reshape(-1, size)
    transposed = matrix.T.copy()  # one pass; rows of the copy are the planes
    return [transposed[i] for i in range(size)]


def encode_chunk(values: np.ndarray) -> tuple[list[list[int]], list[bytes | memoryview]]:
    """Code one chunk of bit patterns; returns `[[mode, size], ...]` per plane and the bytes."""
    compressor = _compressor()
    table: list[list[int]] = []
    parts: list[bytes | memoryview] = []
    for plane in split(values):
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


def decode_chunk(table: list[list[int]], payload: memoryview, count: int, out: np.ndarray) -> None:
    """Decode one chunk of `count` elements from `payload` into `out` (unsigned, 1-D)."""
    size = out.itemsize
    if size == 1:
        target = out.view(np.uint8)
        _decode_plane(table[0], payload, count, target)
        return
    matrix = out.view(np.uint8).reshape(count, size)
    pos = 0
    for i, (mode, length) in enumerate(table):
        part = payload[pos : pos + length]
        pos += length
        if mode == ZERO:
            matrix[:, i] = 0
        elif mode == RAW:
            matrix[:, i] = np.frombuffer(part, dtype=np.uint8)
        else:
            matrix[:, i] = _decompress(part, count)


def _decode_plane(entry: list[int], payload: memoryview, count: int, target: np.ndarray) -> None:
    mode, length = entry
    if mode == ZERO:
        target[:] = 0
    elif mode == RAW:
        target[:] = np.frombuffer(payload[:length], dtype=np.uint8)
    else:
        target[:] = _decompress(payload[:length], count)


def chunk_elements(itemsize: int) -> int:
    """Elements per chunk for a given element size."""
    return max(1, CHUNK_BYTES // itemsize)


def encoded_size(table: list[list[int]]) -> int:
    """Payload bytes a chunk table accounts for."""
    return sum(length for _, length in table)
