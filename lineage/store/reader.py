"""Decode objects back to bytes, verifying every one against its id.

Delta objects name their base; the base is decoded (and verified) first, through the
store's bounded cache, so a chain of depth d costs at most d decodes the first time and
nothing afterwards. Any inconsistency — bad header, short payload, hash mismatch — is a
`CorruptObjectError` naming the object; wrong bytes are never returned.
"""

from __future__ import annotations

import numpy as np
import zstandard

from lineage.errors import CorruptObjectError, LineageError
from lineage.store import codec, objects
from lineage.store.backend import ObjectStore
from lineage.store.dtypes import cast_bits, uint_type
from lineage.store.dtypes import itemsize as dtype_size

#: no stored chain is this deep; a longer one means headers that loop (corruption).
MAX_DECODE_DEPTH = 64


def read_bytes(store: ObjectStore, oid: str, _depth: int = 0) -> np.ndarray:
    """The verified decoded bytes of an object, as a read-only uint8 array."""
    if _depth > MAX_DECODE_DEPTH:
        raise CorruptObjectError(f"object {oid} is corrupt (delta chain loops)")
    cached = store.cache.get(oid)
    if cached is not None:
        return cached
    raw = store.read_object(oid)
    header, payload = objects.unpack(oid, raw)
    if header.get("kind") == "blob":
        data = np.frombuffer(objects.decode_blob(oid, header, payload), dtype=np.uint8)
    else:
        data = _decode_tensor(store, oid, header, payload, _depth)
    if store.object_id(data) != oid:
        raise CorruptObjectError(f"object {oid} is corrupt (content does not match its hash)")
    store.cache.put(oid, data)
    return data


def _decode_tensor(
    store: ObjectStore, oid: str, header: dict, payload: memoryview, depth: int
) -> np.ndarray:
    try:
        dtype = header["dtype"]
        size = dtype_size(dtype)
        if header["n"] % size:
            raise ValueError("tensor length is not a whole number of elements")
        buffer = store.cache.take(header["n"])  # owns its memory, so it can be recycled
        out = buffer.view(uint_type(size))
        pred = None
        base = header.get("base")
        if base:
            base_dtype = header.get("base_dtype", dtype)
            try:
                base_bits = read_bytes(store, base, depth + 1).view(
                    uint_type(dtype_size(base_dtype))
                )
            except LineageError as exc:
                raise CorruptObjectError(
                    f"object {oid} cannot be decoded: its delta base failed ({exc})"
                ) from None
            pred = base_bits if base_dtype == dtype else cast_bits(base_bits, base_dtype, dtype)
        codec.decode_chunks(
            header["enc"], header["chunks"], payload, out, pred, header.get("step", 0.0), dtype
        )
    except CorruptObjectError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, zstandard.ZstdError, LineageError) as exc:
        raise CorruptObjectError(f"object {oid} is corrupt ({exc})") from None
    return buffer
