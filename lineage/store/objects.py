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
from typing import Any, Protocol

import blake3
import zstandard

from lineage.errors import CorruptObjectError

MAGIC = b"LNO1"
_PREFIX = struct.Struct("<4sI")
#: headers are small; a reader fetches this many bytes first to parse one.
HEADER_PEEK = 4096
#: no real header comes near this (a 1 GB tensor's chunk tables take a few kB); a larger
#: declared length is corruption, refused before anything that size is read.
MAX_HEADER_BYTES = 16 << 20
#: the tensor encodings a reader knows.
ENCODINGS = frozenset({"plain", "xor", "sub", "gsub", "mxor", "qdelta"})
#: the encodings whose chunks hold exponent groups (see `lineage.store.groups`)
GROUPED = frozenset({"gsub"})
ZERO, RAW, ZSTD = 0, 1, 2  # plane modes (see `planes`)


HashFunction = Callable[[Any], str]
#: a piece of an object file, written as is (no joining of large buffers)
Part = bytes | memoryview


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
HASHES: dict[str, HashFunction] = {"blake3": _blake3, "sha256": _sha256}
DEFAULT_HASH = "blake3"


def object_id(data: Any, hash_name: str = DEFAULT_HASH) -> str:
    """The id of decoded content (any buffer) under a store's hash, as 64 hex digits."""
    return HASHES[hash_name](data)


class Hasher(Protocol):
    """An incremental content hash (``update`` piece by piece, then ``hexdigest``)."""

    def update(self, data: Any, /) -> Any: ...

    def hexdigest(self) -> str: ...


def new_hasher(hash_name: str = DEFAULT_HASH) -> Hasher:
    """An incremental hasher whose digest equals `object_id` of the concatenated pieces."""
    if hash_name == "blake3":
        return _Blake3Bytes()
    return hashlib.sha256()


class _Blake3Bytes:
    """blake3 taking any buffer (typed arrays are viewed as bytes), one thread."""

    def __init__(self) -> None:
        self._h = blake3.blake3(max_threads=1)

    def update(self, data: Any) -> None:
        view = memoryview(data)
        self._h.update(view if view.format == "B" else view.cast("B"))

    def hexdigest(self) -> str:
        return str(self._h.hexdigest())


def pack(header: dict[str, Any], parts: list[Part]) -> list[Part]:
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


def tensor_header(
    dtype: str,
    nbytes: int,
    enc: str,
    chunks: list[list[Any]],
    *,
    base: str | None = None,
    base_dtype: str | None = None,
    depth: int = 0,
    step: float | None = None,
) -> dict[str, Any]:
    """The header of a tensor object (see the module docstring)."""
    header: dict[str, Any] = {
        "kind": "tensor",
        "dtype": dtype,
        "n": nbytes,
        "enc": enc,
        "depth": depth,
        "chunks": chunks,
    }
    if base is not None:
        header["base"] = base
        header["base_dtype"] = base_dtype or dtype
    if step is not None:
        header["step"] = step
    return header


def header_length(raw: bytes | memoryview) -> int | None:
    """Total bytes of prefix + header, or None if `raw` is too short to tell.

    Raises `ValueError` for a declared length no real header has.
    """
    if len(raw) < _PREFIX.size:
        return None
    _, length = _PREFIX.unpack_from(raw, 0)
    if length > MAX_HEADER_BYTES:
        raise ValueError(f"header length {length} is absurd")
    return int(_PREFIX.size + length)


def max_object_bytes(nbytes: int) -> int:
    """The most bytes a valid object file decoding to `nbytes` bytes can have.

    Every plane is stored raw when zstd does not make it smaller, so a payload never
    exceeds the raw bytes, except a lossy object (int32 residuals: at most 4 bytes per
    byte) and a masked XOR (one extra bit per element). Anything longer is refused
    before it is read, so a hostile object cannot make a reader buffer more than a small
    multiple of what the manifest says it decodes to.
    """
    return _PREFIX.size + MAX_HEADER_BYTES + 4 * nbytes + nbytes // 8 + 64


def check_tensor_header(header: dict[str, Any], payload_len: int, nbytes: int) -> None:
    """Raise `ValueError` unless a tensor header is consistent with `nbytes` decoded
    bytes and a payload of `payload_len` bytes (checked before anything is allocated)."""
    from lineage.store.dtypes import ITEMSIZE

    dtype = header.get("dtype")
    size = ITEMSIZE.get(dtype) if isinstance(dtype, str) else None
    if size is None:
        raise ValueError(f"unknown dtype {dtype!r}")
    if header.get("n") != nbytes or nbytes % size:
        raise ValueError(f"header says {header.get('n')!r} bytes, the manifest {nbytes}")
    enc = header.get("enc")
    if enc not in ENCODINGS:
        raise ValueError(f"unknown encoding {enc!r}")
    base = header.get("base")
    if base is not None:
        if not (isinstance(base, str) and len(base) == 64 and _is_hex(base)):
            raise ValueError("malformed base id")
        base_dtype = header.get("base_dtype", dtype)
        if not isinstance(base_dtype, str) or base_dtype not in ITEMSIZE:
            raise ValueError(f"unknown base dtype {base_dtype!r}")
    elif enc in ("xor", "sub", "gsub", "mxor"):
        raise ValueError(f"{enc} object without a base")
    chunks = header.get("chunks")
    if not isinstance(chunks, list):
        raise ValueError("no chunk list")
    planes_per_element = 4 if enc == "qdelta" else size
    total = 0
    if enc == "mxor":
        if not chunks or not isinstance(chunks[0], list) or chunks[0][:1] != ["mask"]:
            raise ValueError("mxor object without a mask")
        mask_bytes = (nbytes // size + 7) // 8
        total += _check_chunks(chunks[0][1], 1, mask_bytes)
        chunks = chunks[1:]
    grouped = ""
    if enc in GROUPED:
        from lineage.store.groups import applies

        if not isinstance(dtype, str) or not applies(dtype):
            raise ValueError(f"{enc} codes float tensors, not {dtype}")
        grouped = dtype
    total += _check_chunks(chunks, planes_per_element, nbytes // size, grouped)
    if total != payload_len:
        raise ValueError(f"chunk tables cover {total} payload bytes, the object has {payload_len}")


def _check_chunks(chunks: object, planes: int, elements: int, grouped: str = "") -> int:
    """Validate chunk tables covering `elements`; returns the payload bytes they name.

    With `grouped` (the tensor's dtype), every chunk's table holds exponent groups, each
    one checked as a chunk list of its own."""
    if not isinstance(chunks, list):
        raise ValueError("malformed chunk list")
    count_total = 0
    payload = 0
    for chunk in chunks:
        if not (isinstance(chunk, list) and len(chunk) == 2):
            raise ValueError("malformed chunk")
        count, table = chunk
        if grouped:
            from lineage.store.groups import check_table

            if not _is_int(count):
                raise ValueError("malformed chunk")
            head, _, _ = check_table(table, count, grouped)
            payload += _check_chunks([[head, table["head_planes"]]], planes, head)
            if table["groups"]:
                payload += _check_chunks(table["groups"], planes, count - head)
            count_total += count
            continue
        if not (_is_int(count) and count > 0) or not isinstance(table, list):
            raise ValueError("malformed chunk")
        if len(table) != planes:
            raise ValueError("chunk table does not match the element size")
        for plane in table:
            if not (isinstance(plane, list) and len(plane) == 2):
                raise ValueError("malformed plane entry")
            mode, length = plane
            if not (_is_int(length) and length >= 0) or mode not in (ZERO, RAW, ZSTD):
                raise ValueError("malformed plane entry")
            if (mode == ZERO and length) or (mode == RAW and length != count):
                raise ValueError("plane length does not match its mode")
            if mode == ZSTD and length > count + 64:
                raise ValueError("compressed plane longer than its raw bytes")
            payload += length
        count_total += count
    if count_total != elements:
        raise ValueError(f"chunks cover {count_total} elements, the tensor has {elements}")
    return payload


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def blob_parts(data: bytes | memoryview) -> list[Part]:
    """Encode a plain file (config, tokenizer, safetensors header) as an object."""
    packed = zstandard.ZstdCompressor(level=9).compress(data) if len(data) > 256 else b""
    if packed and len(packed) < len(data):
        return pack({"kind": "blob", "codec": "zstd", "n": len(data)}, [packed])
    return pack({"kind": "blob", "codec": "raw", "n": len(data)}, [data])


def decode_blob(oid: str, header: dict[str, Any], payload: memoryview, nbytes: int) -> bytes:
    """Decoded bytes of a blob object that must decode to `nbytes` (not yet verified).

    The declared sizes are checked before anything is decompressed: zstandard sizes its
    output from the frame's own content-size field and ignores `max_output_size` when
    the frame declares one, so a tiny frame could otherwise ask for gigabytes.
    """
    try:
        if header.get("n") != nbytes:
            raise ValueError(f"header says {header.get('n')!r} bytes, the manifest {nbytes}")
        codec = header.get("codec")
        if codec == "raw":
            if len(payload) != nbytes:
                raise ValueError("raw payload has the wrong length")
            return bytes(payload)
        if codec != "zstd":
            raise ValueError(f"unknown codec {codec!r}")
        return decompress_exactly(payload, nbytes)
    except (ValueError, zstandard.ZstdError) as exc:
        raise CorruptObjectError(f"object {oid} is corrupt ({exc})") from None


def decompress_exactly(frame: bytes | memoryview, nbytes: int) -> bytes:
    """Decompress a zstd frame that must give exactly `nbytes` bytes; `ValueError` (or
    `zstandard.ZstdError`) otherwise, without allocating more than `nbytes`."""
    declared = zstandard.frame_content_size(frame)
    if declared not in (-1, nbytes):  # -1: the frame does not say; the cap below holds
        raise ValueError(f"compressed frame declares {declared} bytes, {nbytes} expected")
    data = zstandard.ZstdDecompressor().decompress(frame, max_output_size=nbytes)
    if len(data) != nbytes:
        raise ValueError(f"compressed frame gave {len(data)} bytes, {nbytes} expected")
    return data
