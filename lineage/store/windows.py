"""Decode a few element windows of a stored tensor without decoding all of it.

Ingest scores every candidate delta base on a small sample (see `codec.sample_windows`,
which puts the windows at chunk starts). Decoding each candidate in full just to score
it would cost a whole decode per candidate and tensor; here only the chunk prefixes
that hold the windows are decompressed (zstd stops after the bytes asked for), and a
delta's base is read the same way, window by window.

The result is an estimate input and is not verified against the object's id (that
needs every byte): the base that wins is then decoded in full, and verified, before
anything is coded against it. Any inconsistency is a `CorruptObjectError`, and the
caller skips that candidate.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import zstandard

from lineage.errors import CorruptObjectError, LineageError
from lineage.store import codec, objects, planes
from lineage.store.backend import ObjectStore
from lineage.store.dtypes import cast_bits, itemsize, uint_type
from lineage.store.reader import MAX_DECODE_DEPTH, base_nbytes


def read_windows(
    store: ObjectStore, oid: str, nbytes: int, picks: list[slice], _depth: int = 0
) -> np.ndarray:
    """The bit patterns (the object's own dtype) of the elements in `picks`, concatenated.

    `nbytes` is the object's decoded size (from its manifest entry).
    """
    if _depth > MAX_DECODE_DEPTH:
        raise CorruptObjectError(f"object {oid} is corrupt (delta chain loops)")
    cached = store.cache.get(oid)
    header = store.object_header(oid)
    dtype = header.get("dtype")
    if not isinstance(dtype, str):
        raise CorruptObjectError(f"object {oid} is not a tensor")
    try:
        bits_type = uint_type(itemsize(dtype))
        if cached is not None:
            if cached.nbytes != nbytes:
                raise ValueError("cached object has the wrong size")
            return np.concatenate([cached.view(bits_type)[p] for p in picks])
        with store.read_object(oid, nbytes) as raw:
            header, payload = objects.unpack(oid, raw)
            objects.check_tensor_header(header, len(payload), nbytes)
            pred = None
            if header.get("base"):
                base_dtype = header.get("base_dtype", dtype)
                base = read_windows(
                    store, header["base"], base_nbytes(header, nbytes), picks, _depth + 1
                )
                pred = base if base_dtype == dtype else cast_bits(base, base_dtype, dtype)
            return _decode_windows(header, payload, nbytes // itemsize(dtype), picks, pred)
    except CorruptObjectError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, zstandard.ZstdError, LineageError) as exc:
        raise CorruptObjectError(f"object {oid} is corrupt ({exc})") from None


def _decode_windows(
    header: dict[str, Any],
    payload: memoryview,
    elements: int,
    picks: list[slice],
    pred: np.ndarray | None,
) -> np.ndarray:
    dtype = header["dtype"]
    enc = header["enc"]
    chunks = header["chunks"]
    mask_layout: ChunkLayout | None = None
    pos = 0
    if enc == "mxor":
        mask_layout, pos = _layout(chunks[0][1], 0)
        chunks = chunks[1:]
    layout, _ = _layout(chunks, pos)
    residual_type = np.uint32 if enc == "qdelta" else uint_type(itemsize(dtype))
    out: list[np.ndarray] = []
    offset = 0  # where this pick's prediction starts in `pred`
    for pick in picks:
        start, stop = pick.start or 0, min(pick.stop, elements)
        width = stop - start
        window = _residual_window(layout, payload, start, width, residual_type)
        base = None if pred is None else pred[offset : offset + width]
        offset += width
        if enc == "qdelta":
            q = planes.unzigzag(window).view(np.int32)
            window = codec.dequantize(q, base, float(header.get("step", 0.0)), dtype)
        elif base is not None and enc == "sub":
            window = planes.unzigzag(window) + base
        elif base is not None:
            window = window ^ base
        if mask_layout is not None:
            first = start // 8
            mask = _residual_window(mask_layout, payload, first, (stop + 7) // 8 - first, np.uint8)
            zero = np.unpackbits(mask, bitorder="little")[start - first * 8 :][:width]
            window[zero.view(bool)] = 0
        out.append(window)
    return np.concatenate(out) if out else np.empty(0, residual_type)


ChunkLayout = list[tuple[int, int, list[list[int]], int]]


def _layout(chunks: list[list[Any]], pos: int) -> tuple[ChunkLayout, int]:
    """(first element, count, plane table, payload offset) of each chunk."""
    layout = []
    start = 0
    for count, table in chunks:
        layout.append((start, count, table, pos))
        start += count
        pos += planes.encoded_size(table)
    return layout, pos


def _residual_window(
    layout: ChunkLayout,
    payload: memoryview,
    start: int,
    width: int,
    value_type: type[np.unsignedinteger],
) -> np.ndarray:
    """Elements [start, start + width) of the coded residual (one chunk's prefix decoded)."""
    for first, count, table, pos in layout:  # noqa: B007  (the loop finds them)
        if first <= start < first + count:
            break
    else:
        raise ValueError("window outside the tensor")
    inside = start - first
    if inside + width > count:
        raise ValueError("window crosses a chunk boundary")
    prefix = inside + width
    size = np.dtype(value_type).itemsize
    planes_out: list[bytes | memoryview | np.ndarray | None] = []
    for mode, length in table:
        part = payload[pos : pos + length]
        pos += length
        if mode == objects.ZERO:
            planes_out.append(None)
        elif mode == objects.RAW:
            planes_out.append(part[:prefix])
        else:
            planes_out.append(np.frombuffer(_zstd_prefix(part, prefix), np.uint8))
    if len(planes_out) != size:
        raise ValueError("chunk table does not match the element size")
    values = np.empty(prefix, dtype=value_type)
    planes.merge(values, planes_out, None)
    return values[inside:]


def _zstd_prefix(frame: memoryview, length: int) -> bytes:
    """The first `length` decompressed bytes of a zstd frame (stops reading there)."""
    reader = zstandard.ZstdDecompressor().stream_reader(frame)
    out = bytearray()
    while len(out) < length:
        piece = reader.read(length - len(out))
        if not piece:
            raise ValueError("compressed plane is shorter than its table says")
        out += piece
    return bytes(out)
