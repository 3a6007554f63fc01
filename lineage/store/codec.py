"""Tensor encodings: how a tensor's bit patterns become an object payload and back.

An encoding first *predicts* the tensor (nothing, a stored base tensor, or a base cast
to this dtype), then codes the residual, chunk by chunk, with byte planes + zstd:

- ``plain``: no prediction.
- ``xor``: bits XOR predicted bits. Small weight changes leave sign and exponent equal,
  so the high planes are almost all zero.
- ``sub``: zigzag(bits - predicted bits), as integers. Better than XOR when a small change
  carries across a mantissa byte boundary; ingest only picks it when a sample says it is
  clearly smaller, because XOR decodes in a single pass.
- ``mxor``: XOR, plus a bit mask of the elements that are exactly zero (bits all 0) while
  the prediction is not, whose residual is then stored as zero. A pruned copy of a parent
  is all-zero residual plus a mask of N/8 bytes instead of the parent's bits.
- ``qdelta`` (lossy, opt-in): round((value - predicted) / step); |error| <= step / 2.

A prediction from a base of another float dtype (``cast``) covers fp16/bf16 copies of a
parent without any recipe: the residual is all zero when the cast is the same as ours.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lineage.store import planes
from lineage.store.dtypes import FLOATS, cast_bits, from_float, int_type, itemsize, to_float64

LOSSLESS = ("xor", "sub", "mxor")


@dataclass(frozen=True)
class Prediction:
    """A decoded base tensor a delta is taken against."""

    object_id: str
    dtype: str
    bits: np.ndarray  # unsigned view of the base's decoded bytes
    depth: int

    def for_dtype(self, dtype: str) -> np.ndarray:
        """The base's bit patterns in `dtype` (a cast when the dtypes differ)."""
        if dtype == self.dtype:
            return self.bits
        return cast_bits(self.bits, self.dtype, dtype)


def can_predict(base_dtype: str, dtype: str) -> bool:
    """Whether a base of `base_dtype` can predict a tensor of `dtype`."""
    return base_dtype == dtype or (base_dtype in FLOATS and dtype in FLOATS)


def _zigzag(diff: np.ndarray) -> np.ndarray:
    """Map small signed differences to small unsigned numbers (0, -1, 1, -2 -> 0, 1, 2, 3).

    Works in place on `diff` (a fresh temporary) to save passes over memory.
    """
    sign = diff.view(int_type(diff.itemsize)) >> (diff.itemsize * 8 - 1)
    np.left_shift(diff, diff.dtype.type(1), out=diff)
    np.bitwise_xor(diff, sign.view(diff.dtype), out=diff)
    return diff


def _unzigzag(z: np.ndarray) -> np.ndarray:
    """Inverse of `_zigzag`, in place."""
    one = z.dtype.type(1)
    sign = np.bitwise_and(z, one)
    np.negative(sign, out=sign)  # 0 or all ones (unsigned wrap-around)
    np.right_shift(z, one, out=z)
    np.bitwise_xor(z, sign, out=z)
    return z


def forward(enc: str, cur: np.ndarray, pred: np.ndarray | None) -> np.ndarray:
    """Residual of `cur` (bits) under a lossless encoding (mxor: masked elements zeroed)."""
    if enc == "plain" or pred is None:
        return cur
    if enc == "xor":
        return cur ^ pred
    if enc == "mxor":
        residual = cur ^ pred
        np.copyto(residual, residual.dtype.type(0), where=zero_mask(cur, pred))
        return residual
    return _zigzag(np.subtract(cur, pred))


def zero_mask(cur: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Elements that are exactly zero where the prediction is not (bool)."""
    zero = cur == 0
    zero &= pred != 0
    return zero


def inverse(enc: str, residual: np.ndarray, pred: np.ndarray | None) -> np.ndarray:
    """Undo `forward`; writes into `residual` and returns it."""
    if enc == "plain" or pred is None:
        return residual
    if enc in ("xor", "mxor"):  # mxor's mask is applied by `decode_chunks`
        np.bitwise_xor(residual, pred, out=residual)
        return residual
    diff = _unzigzag(residual)
    np.add(diff, pred, out=residual)
    return residual


def encode_lossless(
    enc: str, cur: np.ndarray, pred: np.ndarray | None
) -> tuple[list[list], list[bytes]]:
    """Code `cur` (bits) as chunk tables + payload parts.

    For ``mxor`` the chunk list starts with the mask: ``["mask", chunks]``, whose parts
    (the packed bits, coded as one uint8 plane per chunk) come first in the payload.
    """
    step = planes.chunk_elements(cur.itemsize)
    chunks: list[list] = []
    parts: list[bytes] = []
    if enc == "mxor" and pred is not None:
        packed = np.packbits(zero_mask(cur, pred), bitorder="little")
        mask_chunks, mask_parts = _code_bytes(packed)
        chunks.append(["mask", mask_chunks])
        parts.extend(mask_parts)
    for start in range(0, cur.size, step):
        stop = min(start + step, cur.size)
        residual = forward(enc, cur[start:stop], None if pred is None else pred[start:stop])
        table, chunk_parts = planes.encode_chunk(np.ascontiguousarray(residual))
        chunks.append([stop - start, table])
        parts.extend(chunk_parts)
    return chunks, parts


def _code_bytes(data: np.ndarray) -> tuple[list[list], list[bytes]]:
    """Chunk tables + parts of a uint8 array (one plane per chunk)."""
    step = planes.CHUNK_BYTES
    chunks: list[list] = []
    parts: list[bytes] = []
    for start in range(0, data.size, step):
        stop = min(start + step, data.size)
        table, chunk_parts = planes.encode_chunk(data[start:stop])
        chunks.append([stop - start, table])
        parts.extend(chunk_parts)
    return chunks, parts


def _decode_bytes(chunks: list[list], payload: memoryview, out: np.ndarray) -> int:
    """Decode `_code_bytes` output into `out` (uint8); returns payload bytes consumed."""
    pos = 0
    start = 0
    for count, table in chunks:
        length = planes.encoded_size(table)
        planes.decode_chunk(table, payload[pos : pos + length], count, out[start : start + count])
        pos += length
        start += count
    if start != out.size:
        raise ValueError("mask table does not match the tensor")
    return pos


def decode_chunks(
    enc: str,
    chunks: list[list],
    payload: memoryview,
    out: np.ndarray,
    pred: np.ndarray | None,
    step: float = 0.0,
    dtype: str = "",
) -> None:
    """Decode a payload written by `encode_lossless` / `encode_lossy` into `out` (bits)."""
    pos = 0
    start = 0
    mask: np.ndarray | None = None
    if enc == "mxor":
        if pred is None or not chunks or chunks[0][0] != "mask":
            raise ValueError("mxor object without a base or a mask")
        packed = np.empty((out.size + 7) // 8, dtype=np.uint8)
        pos = _decode_bytes(chunks[0][1], payload, packed)
        mask = np.unpackbits(packed, count=out.size, bitorder="little").view(bool)
        chunks = chunks[1:]
    for count, table in chunks:
        length = planes.encoded_size(table)
        window = out[start : start + count]
        base = None if pred is None else pred[start : start + count]
        if enc == "qdelta":
            q = np.empty(count, dtype=np.uint32)
            planes.decode_chunk(table, payload[pos : pos + length], count, q)
            window[:] = dequantize(_unzigzag(q).view(np.int32), base, step, dtype)
        elif base is not None and enc != "sub" and all(m == planes.ZERO for m, _ in table):
            window[:] = base  # a zero residual (e.g. an exact cast of the base): one copy
        else:
            planes.decode_chunk(table, payload[pos : pos + length], count, window)
            inverse(enc, window, base)
        pos += length
        start += count
    if start != out.size or pos != len(payload):
        raise ValueError("chunk table does not match the payload")
    if mask is not None:
        np.copyto(out, out.dtype.type(0), where=mask)


def dequantize(q: np.ndarray, pred: np.ndarray | None, step: float, dtype: str) -> np.ndarray:
    """Values of a lossy chunk, as `dtype` bits. float64 arithmetic keeps this reproducible."""
    values = q.astype(np.float64) * step
    if pred is not None:
        values += to_float64(pred, dtype)
    return from_float(values, dtype)


def encode_lossy(
    cur: np.ndarray, pred: np.ndarray | None, dtype: str, step: float
) -> tuple[list[list], list[bytes], np.ndarray] | None:
    """Quantize `cur - pred` to multiples of `step`; returns chunks, parts, decoded bits.

    None when the quantized integers would not fit in int32 (step far too small).
    """
    values = to_float64(cur, dtype)
    base = None if pred is None else to_float64(pred, dtype)
    residual = values if base is None else values - base
    q = np.rint(residual / step)
    if q.size and (not np.isfinite(q).all() or np.abs(q).max() >= 2**30):
        return None
    q32 = q.astype(np.int32)
    decoded = dequantize(q32, pred, step, dtype)
    zz = _zigzag(q32.view(np.uint32))
    per = planes.chunk_elements(4)
    chunks: list[list] = []
    parts: list[bytes] = []
    for start in range(0, zz.size, per):
        stop = min(start + per, zz.size)
        table, chunk_parts = planes.encode_chunk(np.ascontiguousarray(zz[start:stop]))
        chunks.append([stop - start, table])
        parts.extend(chunk_parts)
    return chunks, parts, decoded


SAMPLE_WINDOW = 2048


def sample_windows(n: int, window: int = SAMPLE_WINDOW) -> list[slice]:
    """The element ranges `sample_cost` looks at: start, middle and end of a tensor."""
    if n <= 3 * window:
        return [slice(0, n)]
    return [slice(s, s + window) for s in (0, n // 2 - window // 2, n - window)]


def sample_cost(enc: str, cur: np.ndarray, pred: np.ndarray | None) -> int:
    """Estimated payload bytes of an encoding, from a few windows of the tensor.

    `cur` and `pred` are either whole tensors or already the concatenated windows
    (see `sample_windows`); mxor includes its mask.
    """
    total = 0
    for pick in sample_windows(cur.size):
        window = cur[pick]
        base = None if pred is None else pred[pick]
        residual = forward(enc, window, base)
        table, _ = planes.encode_chunk(np.ascontiguousarray(residual))
        total += planes.encoded_size(table)
        if enc == "mxor" and base is not None:
            packed = np.packbits(zero_mask(window, base))
            table, _ = planes.encode_chunk(packed)
            total += planes.encoded_size(table)
    return total


def element_count(nbytes: int, dtype: str) -> int:
    """Number of elements in `nbytes` of `dtype`."""
    return nbytes // itemsize(dtype)
