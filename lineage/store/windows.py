"""Decode a few element windows of a stored tensor without reading or decoding all of it.

Ingest scores every candidate delta base on a small sample (see `codec.sample_picks`,
which puts the windows at chunk starts). Decoding each candidate in full just to score
it would cost a whole read and decode per candidate and tensor; here only the bytes
that hold the windows are read (ranged reads: a raw plane's window, or a compressed
plane's first blocks) and decompressed up to the window (zstd stops there), and a
delta's base is read the same way, window by window.

The result is an estimate input and is not verified against the object's id (that
needs every byte): the base that wins is then decoded in full, and verified, before
anything is coded against it. Any inconsistency is a `CorruptObjectError`, and the
caller skips that candidate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import zstandard

from lineage.errors import CorruptObjectError, LineageError
from lineage.store import codec, groups, objects, planes
from lineage.store.backend import ObjectStore
from lineage.store.dtypes import cast_bits, itemsize, uint_type
from lineage.store.reader import MAX_DECODE_DEPTH, base_nbytes

#: a zstd block holds at most this much output: decoding the first K bytes of a frame
#: needs at most the blocks up to K + one block, each no larger than its raw bytes
#: plus a 3-byte header, behind a frame header of at most 18 bytes.
ZSTD_BLOCK = 128 << 10


@dataclass(frozen=True)
class _Chunk:
    first: int  # element (or mask byte) the chunk starts at
    count: int
    table: Any  # its planes ([[mode, size], ...]), or a grouped chunk's dict
    at: int  # payload offset of its first plane


def read_windows(
    store: ObjectStore, oid: str, nbytes: int, picks: list[slice], _depth: int = 0
) -> np.ndarray:
    """The bit patterns (the object's own dtype) of the elements in `picks`, concatenated.

    `nbytes` is the object's decoded size (from its manifest entry). A pick that spans
    chunks is read chunk by chunk (`codec.sample_picks` makes none: each of its picks
    costs one chunk's planes, and only their first bytes).
    """
    if _depth > MAX_DECODE_DEPTH:
        raise CorruptObjectError(f"object {oid} is corrupt (delta chain loops)")
    try:
        header, payload_at = store.object_layout(oid)
        dtype = header.get("dtype")
        if not isinstance(dtype, str) or header.get("kind") != "tensor":
            raise ValueError("not a tensor")
        bits_type = uint_type(itemsize(dtype))
        cached = store.cache.get(oid)
        if cached is not None:
            if cached.nbytes != nbytes:
                raise ValueError("cached object has the wrong size")
            return np.concatenate([cached.view(bits_type)[p] for p in picks])
        if header.get("n") != nbytes:
            raise ValueError(f"header says {header.get('n')!r} bytes, the manifest {nbytes}")
        picks = _within_chunks(header, picks)
        if header.get("enc") in objects.GROUPED:
            wide = _outside_heads_whole(header.get("chunks"), dtype, picks)
            if wide != picks:  # only a head decodes in part: read whole chunks, cut
                got = read_windows(store, oid, nbytes, wide, _depth)
                return _narrow(got, wide, picks)
        pred = None
        if header.get("base"):
            base_dtype = header.get("base_dtype", dtype)
            base = read_windows(
                store, header["base"], base_nbytes(header, nbytes), picks, _depth + 1
            )
            pred = base if base_dtype == dtype else cast_bits(base, base_dtype, dtype)
        return _decode_windows(store, oid, header, payload_at, nbytes, picks, pred)
    except CorruptObjectError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, zstandard.ZstdError, LineageError) as exc:
        raise CorruptObjectError(f"object {oid} is corrupt ({exc})") from None


def _layout(chunks: list[list[Any]], at: int) -> tuple[list[_Chunk], int]:
    out = []
    first = 0
    for count, table in chunks:
        out.append(_Chunk(first, count, table, at))
        first += count
        at += codec.chunk_size(table)
    return out, at


def _within_chunks(header: dict[str, Any], picks: list[slice]) -> list[slice]:
    """`picks` cut where the object's chunks end (their concatenation is unchanged)."""
    chunks = header.get("chunks")
    if not isinstance(chunks, list):
        raise ValueError("no chunk list")
    if header.get("enc") == "mxor":
        chunks = chunks[1:]
    ends = np.cumsum([count for count, _ in chunks]).tolist()
    out = []
    for pick in picks:
        start, stop = pick.start or 0, pick.stop
        if stop is None:
            raise ValueError("an open-ended window")
        while start < stop:
            end = next((e for e in ends if e > start), stop)
            out.append(slice(start, min(stop, end)))
            start = min(stop, end)
    return out


def _outside_heads_whole(chunks: Any, dtype: str, picks: list[slice]) -> list[slice]:
    """`picks` of a grouped tensor (each within one chunk), those not inside their
    chunk's ungrouped head widened to the whole chunk (see `lineage.store.groups`)."""
    if not isinstance(chunks, list):
        raise ValueError("no chunk list")
    layout, _ = _layout(chunks, 0)
    out = []
    for pick in picks:
        chunk = _find(layout, pick.start or 0, 0)
        head, _, _ = groups.check_table(chunk.table, chunk.count, dtype)
        inside = pick.stop <= chunk.first + head
        out.append(pick if inside else slice(chunk.first, chunk.first + chunk.count))
    return out


def _narrow(got: np.ndarray, wide: list[slice], picks: list[slice]) -> np.ndarray:
    """The elements of `picks` out of the concatenated windows `wide` (each holding its
    pick)."""
    out = []
    at = 0
    for outer, inner in zip(wide, picks, strict=True):
        skip = (inner.start or 0) - (outer.start or 0)
        out.append(got[at + skip : at + skip + (inner.stop or 0) - (inner.start or 0)])
        at += (outer.stop or 0) - (outer.start or 0)
    return np.concatenate(out) if out else got[:0]


def _find(layout: list[_Chunk], start: int, width: int) -> _Chunk:
    for chunk in layout:
        if chunk.first <= start < chunk.first + chunk.count:
            if start + width > chunk.first + chunk.count:
                raise ValueError("window crosses a chunk boundary")
            return chunk
    raise ValueError("window outside the tensor")


class _Plan:
    """The byte ranges a set of windows needs, read in one go."""

    def __init__(self, payload_at: int) -> None:
        self.payload_at = payload_at
        self.ranges: list[tuple[int, int]] = []
        self.data: list[bytes] = []

    def want(self, chunk: _Chunk, start: int, width: int) -> list[tuple[int, int, int, int]]:
        """Plane reads for elements [start, start + width) of `chunk`: (mode, range index,
        offset of the window in what is read, plane length)."""
        inside = start - chunk.first
        needed = inside + width  # bytes of each plane up to the window's end
        reads = []
        pos = chunk.at
        for mode, length in chunk.table:
            if mode == objects.ZERO:
                reads.append((mode, -1, 0, 0))
            elif mode == objects.RAW:
                reads.append((mode, self.add(pos + inside, width), 0, length))
            else:
                cap = min(length, needed + ZSTD_BLOCK + 3 * (needed // 1024 + 2) + 64)
                reads.append((mode, self.add(pos, cap), inside, length))
            pos += length
        return reads

    def add(self, offset: int, length: int) -> int:
        """Read `length` payload bytes at `offset`; returns the read's index in `data`."""
        self.ranges.append((self.payload_at + offset, length))
        return len(self.ranges) - 1

    def fetch(self, store: ObjectStore, oid: str) -> None:
        self.data = store.read_object_ranges(oid, self.ranges)
        for (_, length), got in zip(self.ranges, self.data, strict=True):
            if len(got) != length:
                raise ValueError("object file is shorter than its header says")

    def plane(
        self, store: ObjectStore, oid: str, read: tuple[int, int, int, int], width: int
    ) -> bytes | None:
        """One plane's bytes for the window (None: an all-zero plane)."""
        mode, index, inside, length = read
        if mode == objects.ZERO:
            return None
        if mode == objects.RAW:
            return self.data[index]
        frame = self.data[index]
        try:
            return _zstd_prefix(frame, inside + width)[inside:]
        except ValueError:
            if len(frame) == length:
                raise
        # the first blocks were not enough (an unusual frame): read the whole plane
        start = self.ranges[index][0]
        (whole,) = store.read_object_ranges(oid, [(start, length)])
        return _zstd_prefix(whole, inside + width)[inside:]


def _decode_windows(
    store: ObjectStore,
    oid: str,
    header: dict[str, Any],
    payload_at: int,
    nbytes: int,
    picks: list[slice],
    pred: np.ndarray | None,
) -> np.ndarray:
    dtype = header["dtype"]
    enc = header["enc"]
    chunks = header["chunks"]
    if not isinstance(chunks, list):
        raise ValueError("no chunk list")
    elements = nbytes // itemsize(dtype)
    mask_layout: list[_Chunk] | None = None
    at = 0
    if enc == "mxor":
        mask_layout, at = _layout(chunks[0][1], 0)
        chunks = chunks[1:]
    layout, _ = _layout(chunks, at)
    if enc in objects.GROUPED:
        return _decode_group_windows(store, oid, dtype, layout, elements, picks, pred, payload_at)
    residual_type = np.uint32 if enc == "qdelta" else uint_type(itemsize(dtype))
    size = np.dtype(residual_type).itemsize
    plan = _Plan(payload_at)
    wanted = []
    for pick in picks:
        start, stop = pick.start or 0, min(pick.stop, elements)
        chunk = _find(layout, start, stop - start)
        if len(chunk.table) != size:
            raise ValueError("chunk table does not match the element size")
        mask = None
        if mask_layout is not None:
            first = start // 8
            mask_chunk = _find(mask_layout, first, (stop + 7) // 8 - first)
            mask = (mask_chunk, first, plan.want(mask_chunk, first, (stop + 7) // 8 - first))
        wanted.append((start, stop, plan.want(chunk, start, stop - start), mask))
    plan.fetch(store, oid)
    out: list[np.ndarray] = []
    offset = 0  # where this pick's prediction starts in `pred`
    for start, stop, reads, mask in wanted:
        width = stop - start
        window = np.empty(width, dtype=residual_type)
        planes.merge(window, [plan.plane(store, oid, r, width) for r in reads], None)
        base = None if pred is None else pred[offset : offset + width]
        offset += width
        if enc == "qdelta":
            q = planes.unzigzag(window).view(np.int32)
            window = codec.dequantize(q, base, float(header.get("step", 0.0)), dtype)
        elif base is not None and enc == "sub":
            window = planes.unzigzag(window) + base
        elif base is not None:
            window = window ^ base
        if mask is not None:
            _, first, mask_reads = mask
            count = (stop + 7) // 8 - first
            packed = np.empty(count, dtype=np.uint8)
            planes.merge(packed, [plan.plane(store, oid, r, count) for r in mask_reads], None)
            zero = np.unpackbits(packed, bitorder="little")[start - first * 8 :][:width]
            window[zero.view(bool)] = 0
        out.append(window)
    return np.concatenate(out) if out else np.empty(0, residual_type)


def _decode_group_windows(
    store: ObjectStore,
    oid: str,
    dtype: str,
    layout: list[_Chunk],
    elements: int,
    picks: list[slice],
    pred: np.ndarray | None,
    payload_at: int,
) -> np.ndarray:
    """`_decode_windows` for exponent-grouped chunks: a window inside a chunk's head
    decodes from a prefix of the head's planes (as `sub`); a whole chunk (the picks
    `_outside_heads_whole` widened) from its whole payload."""
    if pred is None:
        raise ValueError("gsub object without a base")
    bits_type = uint_type(itemsize(dtype))
    plan = _Plan(payload_at)
    wanted: list[tuple[_Chunk, int, int, Any]] = []
    for pick in picks:
        start, stop = pick.start or 0, min(pick.stop, elements)
        chunk = _find(layout, start, stop - start)
        head, _, _ = groups.check_table(chunk.table, chunk.count, dtype)
        if stop <= chunk.first + head:
            head_chunk = _Chunk(chunk.first, head, chunk.table["head_planes"], chunk.at)
            if len(head_chunk.table) != np.dtype(bits_type).itemsize:
                raise ValueError("chunk table does not match the element size")
            wanted.append((chunk, start, stop, plan.want(head_chunk, start, stop - start)))
        elif start == chunk.first and stop == chunk.first + chunk.count:
            wanted.append((chunk, start, stop, plan.add(chunk.at, codec.chunk_size(chunk.table))))
        else:
            raise ValueError("a window of a grouped chunk outside its head")
    plan.fetch(store, oid)
    out: list[np.ndarray] = []
    offset = 0  # where this pick's prediction starts in `pred`
    for chunk, start, stop, reads in wanted:
        width = stop - start
        base = pred[offset : offset + width]
        offset += width
        window = np.empty(width, dtype=bits_type)
        if isinstance(reads, int):  # the whole chunk
            data = memoryview(plan.data[reads])
            groups.decode(chunk.table, data, chunk.count, window, base, dtype)
        else:
            planes.merge(window, [plan.plane(store, oid, r, width) for r in reads], base, True)
        out.append(window)
    return np.concatenate(out) if out else np.empty(0, bits_type)


def _zstd_prefix(frame: bytes, length: int) -> bytes:
    """The first `length` decompressed bytes of (the start of) a zstd frame."""
    reader = planes.decompressor().stream_reader(frame)
    out = bytearray()
    while len(out) < length:
        try:
            piece = reader.read(length - len(out))
        except zstandard.ZstdError as exc:
            raise ValueError(f"compressed plane cut short ({exc})") from None
        if not piece:
            raise ValueError("compressed plane is shorter than its table says")
        out += piece
    return bytes(out[:length])
