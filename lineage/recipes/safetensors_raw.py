"""Reading and writing safetensors files as raw bytes, with numpy only.

Checkout-time rewrites (`lineage.recipes.stock`) run in store commands that must not
import torch, and must pass through tensors of any dtype, bfloat16 included, which
`safetensors.numpy` cannot represent. A safetensors file is simple enough to do by
hand: an 8-byte little-endian header length, a JSON header naming each tensor's
dtype, shape and byte range, then the data.

>>> import numpy as np, tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "t.safetensors"
>>> write_safetensors(path, {"w": RawTensor.from_array(np.ones((2, 2), np.float32))})
>>> t = read_safetensors(path)["w"]
>>> t.dtype, t.shape, t.to_array().sum()
('F32', (2, 2), np.float32(4.0))
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lineage.errors import WeightsError
from lineage.formats import SAFETENSORS_DTYPE_SIZES

#: Bytes per element of every safetensors dtype.
DTYPE_SIZES = SAFETENSORS_DTYPE_SIZES
_NUMPY = {
    "F64": np.float64,
    "I64": np.int64,
    "U64": np.uint64,
    "F32": np.float32,
    "I32": np.int32,
    "U32": np.uint32,
    "F16": np.float16,
    "I16": np.int16,
    "U16": np.uint16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}
_FROM_NUMPY = {np.dtype(v): k for k, v in _NUMPY.items()}
# Larger than any header a real model has; guards against reading a garbage length.
MAX_HEADER_BYTES = 100 * 1024 * 1024


@dataclass(frozen=True)
class RawTensor:
    """A tensor as its safetensors dtype name, shape and little-endian bytes."""

    dtype: str
    shape: tuple[int, ...]
    data: bytes

    @classmethod
    def from_array(cls, array: np.ndarray) -> RawTensor:
        dtype = _FROM_NUMPY.get(array.dtype)
        if dtype is None:
            raise WeightsError(f"numpy dtype {array.dtype} has no safetensors name")
        little = array.astype(array.dtype.newbyteorder("<"), copy=False)
        return cls(dtype, tuple(array.shape), np.ascontiguousarray(little).tobytes())

    def to_array(self) -> np.ndarray:
        """The tensor as a numpy array (not for BF16 or FP8, which numpy lacks)."""
        kind = _NUMPY.get(self.dtype)
        if kind is None:
            raise WeightsError(f"tensor dtype {self.dtype} cannot be read with numpy")
        return np.frombuffer(self.data, dtype=np.dtype(kind).newbyteorder("<")).reshape(self.shape)


def read_header(path: Path) -> tuple[dict[str, dict[str, Any]], dict[str, str], int]:
    """(tensor entries, `__metadata__`, data start) of a safetensors file.

    Raises `WeightsError` naming the file when it is not valid safetensors.
    """
    try:
        with open(path, "rb") as fh:
            prefix = fh.read(8)
            if len(prefix) < 8:
                raise ValueError("shorter than its header length")
            (length,) = struct.unpack("<Q", prefix)
            if length > MAX_HEADER_BYTES:
                raise ValueError(f"header length {length} is implausible")
            header = json.loads(fh.read(length))
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: nested arrays
        raise WeightsError(f"{path} is not a readable safetensors file: {exc}") from None
    metadata = header.pop("__metadata__", None) or {}
    return header, metadata, 8 + length


def read_safetensors(path: Path) -> dict[str, RawTensor]:
    """Every tensor of a safetensors file, in file order, as raw bytes."""
    entries, _, start = read_header(path)
    data = Path(path).read_bytes()
    out: dict[str, RawTensor] = {}
    for name, entry in sorted(entries.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        try:
            dtype, shape = entry["dtype"], tuple(int(d) for d in entry["shape"])
            begin, end = (int(x) for x in entry["data_offsets"])
            expected = DTYPE_SIZES[dtype] * int(np.prod(shape, dtype=np.int64))
        except (KeyError, TypeError, ValueError):
            raise WeightsError(f"{path}: tensor {name!r} has a malformed header entry") from None
        if end - begin != expected or start + end > len(data):
            raise WeightsError(f"{path}: tensor {name!r} does not fit its byte range")
        out[name] = RawTensor(dtype, shape, data[start + begin : start + end])
    return out


def write_safetensors(
    path: Path, tensors: Mapping[str, RawTensor], metadata: Mapping[str, str] | None = None
) -> None:
    """Write `tensors` as a safetensors file that `safetensors` itself would accept.

    Tensors are laid out as safetensors does (widest dtype first, then by name), so
    every tensor stays aligned to its element size and the bytes depend only on the
    tensors given.
    """
    order = sorted(tensors, key=lambda n: (-DTYPE_SIZES[tensors[n].dtype], n))
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    offset = 0
    for name in order:
        t = tensors[name]
        end = offset + len(t.data)
        header[name] = {"dtype": t.dtype, "shape": list(t.shape), "data_offsets": [offset, end]}
        offset += len(t.data)
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)  # the data starts 8-byte aligned
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(encoded)))
        fh.write(encoded)
        for name in order:
            fh.write(tensors[name].data)
