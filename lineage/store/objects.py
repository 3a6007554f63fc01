"""The on-disk object format: a small JSON header followed by the payload.

    b"LNO1" | u32 header length | header JSON | payload

An object's id is a cryptographic hash of its *decoded* bytes (BLAKE3, or SHA-256 in
stores created before BLAKE3 was the default; see `HASHES`), so the same content always
has the same id whatever encoding stored it, and every read can be checked against its id.
The header says how to decode: a blob (`codec` raw or zstd) or a tensor (`enc`, `dtype`,
an optional `base` object id and the chunk tables of its byte planes). `depth` is the
length of the delta chain below a tensor, which ingest keeps bounded.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable
from typing import Any

import blake3
import zstandard

from lineage.errors import CorruptObjectError

MAGIC = b"LNO1"
_PREFIX = struct.Struct("<4sI")
#: headers are small; a reader fetches this many bytes first to parse one.
HEADER_PEEK = 4096


Hasher = Callable[[Any], str]


def _blake3(data: Any) -> str:
    # one thread per call: callers already hash many tensors in parallel threads.
    # blake3 takes byte buffers only: a typed array (e.g. uint32 bits) is viewed as bytes.
    view = memoryview(data)
    if view.format != "B":
        view = view.cast("B")
    return blake3.blake3(view, max_threads=1).hexdigest()


def _sha256(data: Any) -> str:
    return hashlib.sha256(data).hexdigest()


#: content hashes a store can be keyed by, each 256 bits (64 hex digits). BLAKE3 hashes
#: ~4x faster than SHA-256 here (with SHA extensions) and is what new stores use; both
#: release the GIL on large buffers. A store records its hash in its `store.json`.
HASHES: dict[str, Hasher] = {"blake3": _blake3, "sha256": _sha256}
DEFAULT_HASH = "blake3"


def object_id(data: Any, hash_name: str = DEFAULT_HASH) -> str:
    """The id of decoded content (any buffer) under a store's hash, as 64 hex digits."""
    return HASHES[hash_name](data)


def pack(header: dict[str, Any], parts: list[bytes | memoryview]) -> list[bytes | memoryview]:
    """The pieces of an object file, in order (written without joining them)."""
    head = json.dumps(header, separators=(",", ":")).encode()
    return [_PREFIX.pack(MAGIC, len(head)), head, *parts]


def unpack(oid: str, raw: bytes | memoryview) -> tuple[dict[str, Any], memoryview]:
    """Split an object file into its header and payload; `CorruptObjectError` if garbled."""
    view = memoryview(raw)
    try:
        magic, length = _PREFIX.unpack_from(view, 0)
        if magic != MAGIC:
            raise ValueError("bad magic")
        header = json.loads(bytes(view[8 : 8 + length]))
        if not isinstance(header, dict):
            raise ValueError("header is not an object")
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        raise CorruptObjectError(f"object {oid} is corrupt (unreadable header: {exc})") from None
    return header, view[8 + length :]


def header_length(raw: bytes | memoryview) -> int | None:
    """Total bytes of prefix + header, or None if `raw` is too short to tell."""
    if len(raw) < _PREFIX.size:
        return None
    _, length = _PREFIX.unpack_from(raw, 0)
    return _PREFIX.size + length


def blob_parts(data: bytes | memoryview) -> list[bytes | memoryview]:
    """Encode a plain file (config, tokenizer, safetensors header) as an object."""
    packed = zstandard.ZstdCompressor(level=9).compress(data) if len(data) > 256 else b""
    if packed and len(packed) < len(data):
        return pack({"kind": "blob", "codec": "zstd", "n": len(data)}, [packed])
    return pack({"kind": "blob", "codec": "raw", "n": len(data)}, [data])


def decode_blob(oid: str, header: dict[str, Any], payload: memoryview) -> bytes:
    """Decoded bytes of a blob object (not yet verified)."""
    try:
        if header["codec"] == "raw":
            return bytes(payload)
        return zstandard.ZstdDecompressor().decompress(payload, max_output_size=header["n"])
    except (KeyError, zstandard.ZstdError) as exc:
        raise CorruptObjectError(f"object {oid} is corrupt ({exc})") from None
