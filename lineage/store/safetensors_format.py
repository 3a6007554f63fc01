"""Read and validate safetensors headers without trusting them (and never unpickling).

A safetensors file is `u64 little-endian header length N`, `N bytes of JSON`, then the
tensor data. We keep the header bytes verbatim (so checkout is bit-exact, padding and key
order included) and insist the data section is exactly the tensors laid end to end: a
file whose offsets overlap, leave gaps or point past the end is rejected, because
rebuilding it from per-tensor objects would not give the same bytes back.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass

from lineage.errors import WeightsError
from lineage.store.dtypes import itemsize
from lineage.store.sources import OpenSource

#: refuse absurd headers before allocating memory for them (safetensors uses 100 MB).
MAX_HEADER_BYTES = 100_000_000


@dataclass(frozen=True)
class TensorSlot:
    """One tensor as declared by a header: where its bytes lie in the data section."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def nbytes(self) -> int:
        """Length of the tensor's bytes."""
        return self.end - self.begin


@dataclass(frozen=True)
class SafetensorsLayout:
    """A validated header: its exact bytes and the tensors in data order."""

    header: bytes  # the 8 length bytes + the JSON, verbatim
    tensors: list[TensorSlot]  # sorted by offset; contiguous from 0
    metadata: dict[str, str]

    @property
    def data_start(self) -> int:
        """File offset of the first tensor byte."""
        return len(self.header)

    @property
    def file_size(self) -> int:
        """Size the whole file must have."""
        return self.data_start + (self.tensors[-1].end if self.tensors else 0)


def parse_header(head: bytes, file_size: int, where: str) -> SafetensorsLayout:
    """Validate the header at the start of a file of `file_size` bytes.

    `head` must hold at least the first `8 + N` bytes. Every failure is one
    `WeightsError` line that names `where`.
    """
    if file_size < 8 or len(head) < 8:
        raise WeightsError(f"{where}: truncated safetensors file (no header length)")
    (n,) = struct.unpack("<Q", head[:8])
    if n > MAX_HEADER_BYTES or 8 + n > file_size:
        raise WeightsError(f"{where}: safetensors header length {n} exceeds the file")
    raw = head[8 : 8 + n]
    if len(raw) != n:
        raise WeightsError(f"{where}: truncated safetensors header")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        # RecursionError: deeply nested arrays, which no real header has
        raise WeightsError(
            f"{where}: malformed safetensors header ({exc.__class__.__name__})"
        ) from None
    if not isinstance(doc, dict):
        raise WeightsError(f"{where}: malformed safetensors header (not a JSON object)")
    metadata = doc.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise WeightsError(f"{where}: malformed __metadata__ (must map strings to strings)")
    slots = [_slot(name, info, where) for name, info in doc.items()]
    slots.sort(key=lambda s: (s.begin, s.end))
    cursor = 0
    for slot in slots:
        if slot.begin != cursor:
            raise WeightsError(
                f"{where}: header offsets lie: tensor {slot.name!r} starts at {slot.begin}, "
                f"expected {cursor} (overlap or gap)"
            )
        cursor = slot.end
    data_len = file_size - 8 - n
    if cursor != data_len:
        raise WeightsError(
            f"{where}: header offsets lie: tensors cover {cursor} bytes but the file holds "
            f"{data_len} (truncated or padded file)"
        )
    return SafetensorsLayout(header=bytes(head[: 8 + n]), tensors=slots, metadata=metadata)


def _slot(name: str, info: object, where: str) -> TensorSlot:
    if not isinstance(info, dict):
        raise WeightsError(f"{where}: malformed entry for tensor {name!r}")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if not isinstance(dtype, str):
        raise WeightsError(f"{where}: tensor {name!r} has no dtype")
    try:
        size = itemsize(dtype)
    except WeightsError as exc:
        raise WeightsError(f"{where}: tensor {name!r}: {exc}") from None
    if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
        raise WeightsError(f"{where}: tensor {name!r} has a malformed shape {shape!r}")
    if not (
        isinstance(offsets, list)
        and len(offsets) == 2
        and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        and 0 <= offsets[0] <= offsets[1]
    ):
        raise WeightsError(f"{where}: tensor {name!r} has malformed data_offsets {offsets!r}")
    expected = math.prod(shape) * size
    if offsets[1] - offsets[0] != expected:
        raise WeightsError(
            f"{where}: header offsets lie: tensor {name!r} ({dtype} {shape}) needs "
            f"{expected} bytes but its offsets span {offsets[1] - offsets[0]}"
        )
    return TensorSlot(name, dtype, tuple(shape), offsets[0], offsets[1])


def read_layout(f: OpenSource) -> SafetensorsLayout:
    """Validate the header of an open safetensors file (read with ``pread``)."""
    size, path = f.source.size, f.source.path
    if size < 8:
        raise WeightsError(f"{path}: truncated safetensors file (no header length)")
    prefix = f.read(0, 8)
    (n,) = struct.unpack("<Q", prefix)
    if n > MAX_HEADER_BYTES or 8 + n > size:
        raise WeightsError(f"{path}: safetensors header length {n} exceeds the file")
    return parse_header(prefix + f.read(8, n), size, str(path))
