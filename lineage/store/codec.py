"""Tensor encodings: how a tensor's bit patterns become an object payload and back.

An encoding first *predicts* the tensor (nothing, a stored base tensor, or a base cast
to this dtype), then codes the residual, chunk by chunk, with byte planes + zstd:

- ``plain``: no prediction.
- ``xor``: bits XOR predicted bits. Small weight changes leave sign and exponent equal,
  so the high planes are almost all zero.
- ``sub``: zigzag(bits - predicted bits), as integers. Better than XOR when a small change
  carries across a mantissa byte boundary (most fine-tune updates); ingest picks
  whichever a sample says is smaller.
- ``gsub``: ``sub`` coded in groups of elements whose base has the same exponent (see
  `lineage.store.groups`): a float delta's residual width follows the base's exponent.
- ``mxor``: XOR, plus a bit mask of the elements that are exactly zero (bits all 0) while
  the prediction is not, whose residual is then stored as zero. A pruned copy of a parent
  is all-zero residual plus a mask of N/8 bytes instead of the parent's bits.
- ``qdelta`` (lossy, opt-in): round((value - predicted) / step); |error| <= step / 2.

A prediction from a base of another float dtype (``cast``) covers fp16/bf16 copies of a
parent without any recipe: the residual is all zero when the cast is the same as ours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lineage.store import groups, planes
from lineage.store.dtypes import FLOATS, cast_bits, from_float, itemsize, to_float64
from lineage.store.objects import Part

LOSSLESS = ("xor", "sub", "gsub", "mxor")


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


def encode_lossless(
    enc: str, cur: np.ndarray, pred: np.ndarray | None, dtype: str = ""
) -> tuple[list[list[Any]], list[Part]]:
    """Code `cur` (bits of `dtype`) as chunk tables + payload parts.

    A ``gsub`` chunk's table is a dict (see `lineage.store.groups`). For ``mxor`` the
    chunk list starts with the mask: ``["mask", chunks]``, whose parts (the packed bits,
    coded as one uint8 plane per chunk) come first in the payload.
    """
    step = planes.chunk_elements(cur.itemsize)
    chunks: list[list[Any]] = []
    parts: list[Part] = []
    if enc == "mxor" and pred is not None:
        mask_chunks, mask_parts = _code_bytes(planes.mask_bits(cur, pred))
        chunks.append(["mask", mask_chunks])
        parts.extend(mask_parts)
    for start in range(0, cur.size, step):
        stop = min(start + step, cur.size)
        window = np.ascontiguousarray(cur[start:stop])
        if enc == "plain" or pred is None:
            table, chunk_parts = planes.encode_chunk(window)
        elif enc == "gsub":
            base = np.ascontiguousarray(pred[start:stop])
            table, chunk_parts = groups.encode(window, base, dtype)  # type: ignore[assignment]
        else:  # the plane split forms the residual in the same pass
            base = np.ascontiguousarray(pred[start:stop])
            table, chunk_parts = planes.encode_chunk(window, base, enc)
        chunks.append([stop - start, table])
        parts.extend(chunk_parts)
    return chunks, parts


def chunk_size(table: list[list[int]] | dict[str, Any]) -> int:
    """Payload bytes one chunk's table accounts for (planes, or exponent groups)."""
    if isinstance(table, dict):
        return groups.payload_size(table)
    return planes.encoded_size(table)


def _code_bytes(data: np.ndarray) -> tuple[list[list[Any]], list[Part]]:
    """Chunk tables + parts of a uint8 array (one plane per chunk)."""
    step = planes.CHUNK_BYTES
    chunks: list[list[Any]] = []
    parts: list[Part] = []
    for start in range(0, data.size, step):
        stop = min(start + step, data.size)
        table, chunk_parts = planes.encode_chunk(data[start:stop])
        chunks.append([stop - start, table])
        parts.extend(chunk_parts)
    return chunks, parts


def _decode_bytes(chunks: list[list[Any]], payload: memoryview, out: np.ndarray) -> int:
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
    chunks: list[list[Any]],
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
        mask = np.empty((out.size + 7) // 8, dtype=np.uint8)
        pos = _decode_bytes(chunks[0][1], payload, mask)
        chunks = chunks[1:]
    if enc == "gsub" and pred is None:
        raise ValueError("gsub object without a base")
    for count, table in chunks:
        length = chunk_size(table)
        window = out[start : start + count]
        base = None if pred is None else pred[start : start + count]
        part = payload[pos : pos + length]
        if enc == "gsub":
            assert base is not None
            groups.decode(table, part, count, window, base, dtype)
        elif enc == "qdelta":
            q = np.empty(count, dtype=np.uint32)
            planes.decode_chunk(table, part, count, q)
            window[:] = dequantize(planes.unzigzag(q).view(np.int32), base, step, dtype)
        elif base is not None and enc != "sub" and all(m == planes.ZERO for m, _ in table):
            window[:] = base  # a zero residual (e.g. an exact cast of the base): one copy
        else:  # the plane merge applies the XOR / difference in the same pass
            planes.decode_chunk(table, part, count, window, base, add=enc == "sub")
        pos += length
        start += count
    if start != out.size or pos != len(payload):
        raise ValueError("chunk table does not match the payload")
    if mask is not None:
        planes.zero_masked(out, mask)


def dequantize(q: np.ndarray, pred: np.ndarray | None, step: float, dtype: str) -> np.ndarray:
    """Values of a lossy chunk, as `dtype` bits. float64 arithmetic keeps this reproducible."""
    values = q.astype(np.float64) * step
    if pred is not None:
        values += to_float64(pred, dtype)
    return from_float(values, dtype)


def encode_lossy(
    cur: np.ndarray, pred: np.ndarray | None, dtype: str, step: float
) -> tuple[list[list[Any]], list[Part], np.ndarray, float] | None:
    """Quantize `cur - pred` to multiples of `step`; returns chunks, parts, decoded bits
    and the largest absolute error.

    Chunk by chunk, so the float64 temporaries stay a few MB whatever the tensor's
    size. None when the quantized integers would not fit in int32 (step far too small).
    """
    per = planes.chunk_elements(4)
    decoded = np.empty_like(cur)
    chunks: list[list[Any]] = []
    parts: list[Part] = []
    worst = 0.0
    for start in range(0, cur.size, per):
        stop = min(start + per, cur.size)
        values = to_float64(cur[start:stop], dtype)
        base = None if pred is None else pred[start:stop]
        residual = values if base is None else values - to_float64(base, dtype)
        q = np.rint(residual / step)
        if not np.isfinite(q).all() or np.abs(q).max() >= 2**30:
            return None
        q32 = q.astype(np.int32)
        decoded[start:stop] = dequantize(q32, base, step, dtype)
        error = np.abs(to_float64(decoded[start:stop], dtype) - values)
        worst = max(worst, float(error.max()))
        table, chunk_parts = planes.encode_chunk(planes.zigzag(q32.view(np.uint32)))
        chunks.append([stop - start, table])
        parts.extend(chunk_parts)
    return chunks, parts, decoded, worst


SAMPLE_WINDOW = 2048


def sample_windows(n: int, window: int = SAMPLE_WINDOW) -> list[slice]:
    """The element ranges `sample_cost` looks at: start, middle and end of a tensor."""
    if n <= 3 * window:
        return [slice(0, n)]
    return [slice(s, s + window) for s in (0, n // 2 - window // 2, n - window)]


def sample_picks(n: int, itemsize: int, window: int = SAMPLE_WINDOW) -> list[slice]:
    """Where ingest samples a tensor of `n` elements to compare encodings and bases.

    Start, middle and end of a tensor of three chunks or more, each window at a chunk
    start; the first three windows' worth of a smaller one. Either way a stored
    candidate base is scored by decoding a few thousand elements at the start of a
    chunk (see `lineage.store.windows`), never the whole tensor: zstd decodes a plane
    from its start, so a window deep inside a chunk would cost the whole chunk.
    """
    if n <= 3 * window:
        return [slice(0, n)]
    per = planes.chunk_elements(itemsize)
    last = (n - 1) // per
    if last < 2:
        return [slice(0, 3 * window)]
    starts = [0, (last // 2) * per, last * per]
    return [slice(s, min(s + window, n)) for s in starts]


def sample_cost(enc: str, cur: np.ndarray, pred: np.ndarray | None) -> int:
    """Estimated payload bytes of an encoding, from a few windows of the tensor.

    `cur` and `pred` are either whole tensors or already the concatenated windows
    (see `sample_windows`); mxor includes its mask.
    """
    total = 0
    for pick in sample_windows(cur.size):
        window = np.ascontiguousarray(cur[pick])
        base = None if pred is None or enc == "plain" else np.ascontiguousarray(pred[pick])
        table, _ = planes.encode_chunk(window, base, "xor" if base is None else enc)
        total += planes.encoded_size(table)
        if enc == "mxor" and base is not None:
            table, _ = planes.encode_chunk(planes.mask_bits(window, base))
            total += planes.encoded_size(table)
    return total


def element_count(nbytes: int, dtype: str) -> int:
    """Number of elements in `nbytes` of `dtype`."""
    return nbytes // itemsize(dtype)
