"""Decode objects back to bytes, verifying every one against its id.

Delta objects name their base; the base is decoded (and verified) first, through the
store's bounded cache, so a chain of depth d costs at most d decodes the first time and
nothing afterwards. Any inconsistency — bad header, short payload, hash mismatch — is a
`CorruptObjectError` naming the object; wrong bytes are never returned.

Nothing in an object is trusted before it is checked: the caller says how many bytes
the object must decode to (from its manifest), the file is read only if it is no longer
than such an object can be, and its header (declared size, chunk tables, plane modes,
every compressed frame's declared size) must agree before any output is allocated.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import zstandard

from lineage.errors import CorruptObjectError, LineageError
from lineage.store import codec, objects
from lineage.store.backend import ObjectStore
from lineage.store.dtypes import cast_bits, uint_type
from lineage.store.dtypes import itemsize as dtype_size

#: no stored chain is this deep; a longer one means headers that loop (corruption).
MAX_DECODE_DEPTH = 64


def read_bytes(
    store: ObjectStore,
    oid: str,
    nbytes: int,
    *,
    keep: bool = False,
    fresh: bool = False,
    _depth: int = 0,
) -> np.ndarray:
    """The verified decoded bytes of an object that must be `nbytes` long, as a
    read-only uint8 array.

    Delta bases met on the way are kept in the store's decoded cache (other objects
    are likely coded against them too); the object itself only with `keep` (a caller
    that will code against it). A checkout or verify thus holds one decoded object per
    thread, not a cache full of them, and recycles its buffers. With `fresh`, the
    object and its whole chain are read from the backend even if decoded copies are
    cached: a check that the stored bytes themselves are intact.
    """
    if _depth > MAX_DECODE_DEPTH:
        raise CorruptObjectError(f"object {oid} is corrupt (delta chain loops)")
    cached = None if fresh else store.cache.get(oid)
    if cached is not None:
        if cached.nbytes != nbytes:
            raise CorruptObjectError(
                f"object {oid} has {cached.nbytes} bytes, {nbytes} were expected"
            )
        return cached
    with store.read_object(oid, nbytes) as raw:
        header, payload = objects.unpack(oid, raw)
        if header.get("kind") == "blob":
            data = np.frombuffer(objects.decode_blob(oid, header, payload, nbytes), np.uint8)
        else:
            data = _decode_tensor(store, oid, header, payload, nbytes, fresh, _depth)
    if store.object_id(data) != oid:
        raise CorruptObjectError(f"object {oid} is corrupt (content does not match its hash)")
    if keep or _depth > 0:
        store.cache.put(oid, data)
    return data


def base_nbytes(header: dict[str, Any], nbytes: int) -> int:
    """How many bytes a tensor object's base decodes to (same elements, its own dtype)."""
    dtype = header["dtype"]
    return nbytes // dtype_size(dtype) * dtype_size(header.get("base_dtype", dtype))


def _decode_tensor(
    store: ObjectStore,
    oid: str,
    header: dict[str, Any],
    payload: memoryview,
    nbytes: int,
    fresh: bool,
    depth: int,
) -> np.ndarray:
    try:
        objects.check_tensor_header(header, len(payload), nbytes)
        dtype = header["dtype"]
        size = dtype_size(dtype)
        pred = None
        base = header.get("base")
        if base:
            base_dtype = header.get("base_dtype", dtype)
            try:
                base_bits = read_bytes(
                    store, base, base_nbytes(header, nbytes), fresh=fresh, _depth=depth + 1
                )
            except LineageError as exc:
                raise CorruptObjectError(
                    f"object {oid} cannot be decoded: its delta base failed ({exc})"
                ) from None
            base_bits = base_bits.view(uint_type(dtype_size(base_dtype)))
            pred = base_bits if base_dtype == dtype else cast_bits(base_bits, base_dtype, dtype)
        buffer = store.cache.take(nbytes)  # owns its memory, so it can be recycled
        codec.decode_chunks(
            header["enc"],
            header["chunks"],
            payload,
            buffer.view(uint_type(size)),
            pred,
            float(header.get("step", 0.0)),
            dtype,
        )
    except CorruptObjectError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, zstandard.ZstdError, LineageError) as exc:
        raise CorruptObjectError(f"object {oid} is corrupt ({exc})") from None
    return buffer
