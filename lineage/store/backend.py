"""`ObjectStore`: the object layer's interface, shared by the local and S3 backends.

A backend implements a handful of primitives on keys (atomic durable put, get, ranged
get, exists, delete, list, touch) and a lock; everything above (objects, manifests, the
decoded-tensor cache) is written once here against those primitives.

Keys: ``objects/ab/<id>`` for objects, ``manifests/<id>.json`` for manifests, and
``store.json``, which records the store's format and the content hash its ids use.

Nothing read from a backend is trusted: ids must look like ids before they become keys,
and every read is capped at what the reader can legitimately expect (an object at a
small multiple of the size its manifest says it decodes to, a manifest at
`MAX_MANIFEST_BYTES`), so a hostile or corrupt file cannot make a reader allocate
gigabytes.

Memory: one budget (`memory_bytes`) bounds what the store holds at once, whatever the
model's size: a quarter for the decoded-tensor cache, a sixteenth for idle read buffers,
half for the tensors an ingest has in flight.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lineage.errors import CorruptObjectError, MissingObjectError, StoreError
from lineage.store import objects
from lineage.store.buffers import BufferPool
from lineage.store.manifest import Manifest, ManifestError, check_object_id, find_problem

if TYPE_CHECKING:
    import numpy as np

#: the store's working memory: cache, idle buffers and in-flight ingest work together.
DEFAULT_MEMORY_BYTES = 1 << 30
DEFAULT_MAX_CHAIN_DEPTH = 8
#: a manifest of 100,000 tensors takes about 25 MB; anything past this is not one.
MAX_MANIFEST_BYTES = 512 << 20
#: the key that records a store's format and hash (written when the store is first used).
STORE_META_KEY = "store.json"
STORE_FORMAT = 1


@dataclass(frozen=True)
class Entry:
    """One listed key: its name, size in bytes and modification time (epoch seconds)."""

    key: str
    size: int
    mtime: float


class TooLargeError(Exception):
    """A key holds more bytes than the reader accepts (raised by the backends)."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


class DecodedCache:
    """A byte-bounded LRU of verified decoded tensors, so delta bases are decoded once.

    Bounded so a family never has to fit in memory; shared by the ingest and checkout
    threads (hence the lock).

    Evicted buffers that nobody else holds any more are kept as spares (bounded too)
    and handed out again by `take`: decoding into memory the process already touched is
    markedly faster than into fresh pages, which the kernel must zero first (and, in a
    virtual machine, the host must back), a cost that otherwise rivals the decoding.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._size = 0
        self._spares: dict[int, list[np.ndarray]] = {}
        self._spare_size = 0
        self._lock = threading.Lock()

    def get(self, oid: str) -> np.ndarray | None:
        """The cached decoded bytes of `oid`, or None."""
        with self._lock:
            item = self._items.get(oid)
            if item is not None:
                self._items.move_to_end(oid)
            return item

    def put(self, oid: str, data: np.ndarray) -> bool:
        """Remember verified decoded bytes (evicting least recently used entries);
        False when they were not kept (too large, or already cached)."""
        if data.nbytes > self.capacity // 4:
            return False  # one huge tensor must not flush everything else
        data.flags.writeable = False
        with self._lock:
            if oid in self._items:
                return False
            self._items[oid] = data
            self._size += data.nbytes
            while self._size > self.capacity and self._items:
                _, old = self._items.popitem(last=False)
                self._size -= old.nbytes
                self._keep_spare(old)
        return True

    def drop(self, oid: str) -> None:
        """Forget one cached object."""
        with self._lock:
            item = self._items.pop(oid, None)
            if item is not None:
                self._size -= item.nbytes

    def recycle(self, data: np.ndarray) -> None:
        """Offer a buffer from `take` that the caller no longer needs for re-use (kept
        only if nothing but the caller's one name refers to it)."""
        with self._lock:
            self._keep_spare(data, holders=4)

    def take(self, nbytes: int) -> np.ndarray:
        """A writable uint8 buffer of `nbytes`: a recycled spare if one fits, else new."""
        with self._lock:
            spares = self._spares.get(nbytes)
            if spares:
                buf = spares.pop()
                self._spare_size -= nbytes
                buf.flags.writeable = True
                return buf
        import numpy as np  # here: reading manifests alone needs no numpy

        return np.empty(nbytes, dtype=np.uint8)

    def _keep_spare(self, old: np.ndarray, holders: int = 3) -> None:
        # Only a buffer that owns its memory and is referenced from nowhere else can be
        # written again: a reader still holding it (or any view of it, whose base it
        # is) shows in its reference count (the caller's name, ours, the call's
        # argument: 3; with `recycle`, its own argument too).
        if old.base is not None or sys.getrefcount(old) > holders or old.dtype != "uint8":
            return
        if self._spare_size + old.nbytes > self.capacity // 4:
            return
        self._spares.setdefault(old.nbytes, []).append(old)
        self._spare_size += old.nbytes

    def clear(self) -> None:
        """Drop everything (tests use this to force reads from the backend)."""
        with self._lock:
            self._items.clear()
            self._size = 0
            self._spares.clear()
            self._spare_size = 0


class ObjectStore(ABC):
    """Content-addressed objects and manifests, on a local folder or an S3 bucket.

    `ObjectStore.open(URL)` takes a folder or `s3://bucket/prefix` (with the usual AWS
    settings, or `endpoint_url=` for an S3-compatible server).

    Example:
        >>> store = ObjectStore.open(str(tmp / "objects"))
        >>> type(store).__name__
        'LocalObjectStore'
    """

    location: str

    def __init__(
        self,
        *,
        max_chain_depth: int = DEFAULT_MAX_CHAIN_DEPTH,
        memory_bytes: int = DEFAULT_MEMORY_BYTES,
        cache_bytes: int | None = None,
        workers: int | None = None,
    ) -> None:
        if max_chain_depth < 0:
            raise StoreError(f"delta chain depth must be 0 or more, not {max_chain_depth}")
        self.max_chain_depth = max_chain_depth
        self.memory_bytes = memory_bytes
        self.cache = DecodedCache(memory_bytes // 4 if cache_bytes is None else cache_bytes)
        self.buffers = BufferPool(memory_bytes // 16)
        self.workers = workers
        self._known: set[str] = set()
        #: object id -> (header, payload offset): objects never change, so read once
        self._layouts: dict[str, tuple[dict[str, Any], int]] = {}
        self._meta_lock = threading.Lock()
        #: manifest id -> sketch, so parent discovery reads each manifest once
        self.sketches: dict[str, list[int]] = {}
        self._hash_name: str | None = None

    # -- opening -------------------------------------------------------------------
    @staticmethod
    def open(location: str | Path, **options: Any) -> ObjectStore:
        """Open (creating if needed) the store at a folder path or an ``s3://`` URL.

        S3 options: ``endpoint_url``, ``aws_access_key_id``, ``aws_secret_access_key``,
        ``region_name`` (default from the usual AWS environment variables) and
        ``lease_seconds`` (of the ingest/gc lock, see `lineage.store.s3_lock`). Common
        options: ``max_chain_depth`` (longest delta chain a new object may extend),
        ``memory_bytes`` (the store's working-memory budget), ``cache_bytes`` (override
        the decoded-tensor cache's share of it), ``workers`` (threads; default: cores).
        """
        text = str(location)
        if text.startswith("s3://"):
            from lineage.store.s3 import S3ObjectStore

            return S3ObjectStore(text, **options)
        from lineage.store.local import LocalObjectStore

        return LocalObjectStore(Path(text), **options)

    # -- backend primitives ------------------------------------------------------------
    @abstractmethod
    def _put(self, key: str, parts: list[bytes | memoryview]) -> None:
        """Write `key` atomically and durably (it appears whole or not at all)."""

    @abstractmethod
    def _get(self, key: str, max_bytes: int | None = None) -> bytes:
        """Read a whole key; `KeyError` if absent, `TooLargeError` past `max_bytes`."""

    @abstractmethod
    def _read_into(
        self, key: str, max_bytes: int, pool: BufferPool
    ) -> contextlib.AbstractContextManager[memoryview]:
        """A read-only view of a whole key, valid inside the block (the backend may read
        it into a recycled buffer); `KeyError` if absent, `TooLargeError` past
        `max_bytes`."""

    @abstractmethod
    def _get_prefix(self, key: str, length: int) -> bytes:
        """Read the first `length` bytes of a key; `KeyError` if absent."""

    @abstractmethod
    def _get_ranges(self, key: str, ranges: list[tuple[int, int]]) -> list[bytes]:
        """Read (offset, length) ranges of a key (shorter at its end); `KeyError` if absent."""

    @abstractmethod
    def _exists(self, key: str) -> bool:
        """Whether `key` exists."""

    @abstractmethod
    def _delete(self, key: str) -> None:
        """Remove `key` (no error if absent)."""

    @abstractmethod
    def _list(self, prefix: str) -> Iterator[Entry]:
        """Every key under `prefix`."""

    @abstractmethod
    def _touch(self, key: str) -> None:
        """Refresh `key`'s modification time (gc's grace period counts from it)."""

    @abstractmethod
    def lock(self, *, exclusive: bool) -> contextlib.AbstractContextManager[None]:
        """Ingests hold it shared, gc holds it exclusive."""

    def flush(self) -> None:  # noqa: B027  (a no-op where puts are durable on return)
        """Make every completed `_put` durable (directory entries included)."""

    def temp_files(self) -> list[Entry]:
        """Leftover temp files of writers that were killed (none where puts are atomic)."""
        return []

    def remove_stale_temp(self, older_than: float) -> list[Entry]:
        """Delete temp files of killed writers older than epoch `older_than`; returns them."""
        return []

    # -- format and ids ------------------------------------------------------------
    @property
    def hash_name(self) -> str:
        """The content hash of this store's ids (``blake3``, or ``sha256`` for old stores)."""
        if self._hash_name is None:
            name = self._load_or_init_format()
            if name not in objects.HASHES:
                raise StoreError(
                    f"the store at {self.location} uses hash {name!r}, which this version of "
                    f"lineage does not know (known: {', '.join(objects.HASHES)}): upgrade lineage"
                )
            self._hash_name = name
        return self._hash_name

    def object_id(self, data: Any) -> str:
        """The id of decoded content (any buffer) in this store."""
        return objects.object_id(data, self.hash_name)

    def new_hasher(self) -> objects.Hasher:
        """An incremental hasher giving this store's ids (content fed piece by piece)."""
        return objects.new_hasher(self.hash_name)

    def _load_or_init_format(self) -> str:
        try:
            meta = json.loads(self._get(STORE_META_KEY, 1 << 20))
            return str(meta["hash"])
        except KeyError:
            pass
        except (ValueError, TypeError, TooLargeError) as exc:
            raise StoreError(
                f"{STORE_META_KEY} of the store at {self.location} is garbled: {exc}"
            ) from None
        name = self._detect_legacy_hash() or objects.DEFAULT_HASH
        meta_bytes = (json.dumps({"format": STORE_FORMAT, "hash": name}, indent=1) + "\n").encode()
        # Two first users racing write the same bytes; the put is atomic either way.
        self._put(STORE_META_KEY, [meta_bytes])
        self.flush()
        return name

    def _detect_legacy_hash(self) -> str | None:
        """For a store written before `store.json` existed: the hash its manifest ids match."""
        for entry in self._list("manifests/"):
            if not entry.key.endswith(".json"):
                continue
            mid = entry.key.rsplit("/", 1)[-1][: -len(".json")]
            try:
                data = self._get(entry.key, MAX_MANIFEST_BYTES)
            except (KeyError, TooLargeError):
                continue
            for name in objects.HASHES:
                if objects.object_id(data, name) == mid:
                    return name
        return None

    # -- objects -------------------------------------------------------------------
    @staticmethod
    def object_key(oid: str) -> str:
        """The key an object lives under (`StoreError` for a malformed id: ids come from
        manifests and object headers, which may be hostile, and become paths)."""
        if not check_object_id(oid):
            raise StoreError(f"malformed object id {oid!r}")
        return f"objects/{oid[:2]}/{oid}"

    def has_object(self, oid: str) -> bool:
        """Whether the object is stored (remembered once seen)."""
        if oid in self._known:
            return True
        if self._exists(self.object_key(oid)):
            with self._meta_lock:
                self._known.add(oid)
            return True
        return False

    def refresh_object(self, oid: str) -> None:
        """Mark an existing object as in use now, so a concurrent gc's grace period spares it."""
        with contextlib.suppress(KeyError, FileNotFoundError):
            self._touch(self.object_key(oid))

    def put_object(self, oid: str, parts: list[bytes | memoryview]) -> None:
        """Store an encoded object under its id (durable once `flush` returns)."""
        self._put(self.object_key(oid), parts)
        with self._meta_lock:
            self._known.add(oid)

    @contextlib.contextmanager
    def read_object(self, oid: str, nbytes: int) -> Iterator[memoryview]:
        """The encoded bytes of an object that decodes to `nbytes` bytes, valid inside
        the block; `MissingObjectError` if absent, `CorruptObjectError` if the file is
        longer than any object of that size can be (read no further)."""
        limit = objects.max_object_bytes(nbytes)
        reading = contextlib.ExitStack()
        try:  # only opening the object maps KeyError: the caller's block may raise one too
            view = reading.enter_context(self._read_into(self.object_key(oid), limit, self.buffers))
        except KeyError:
            raise MissingObjectError(f"object {oid} is missing from the store") from None
        except TooLargeError as exc:
            raise CorruptObjectError(
                f"object {oid} is corrupt ({exc.size} bytes, more than an object of "
                f"{nbytes} bytes can take)"
            ) from None
        with reading:
            yield view

    def read_object_ranges(self, oid: str, ranges: list[tuple[int, int]]) -> list[bytes]:
        """Byte ranges of an object's file (offsets from its start); a short result means
        the file ended first. `MissingObjectError` if absent."""
        try:
            return self._get_ranges(self.object_key(oid), ranges)
        except KeyError:
            raise MissingObjectError(f"object {oid} is missing from the store") from None

    def object_header(self, oid: str) -> dict[str, Any]:
        """An object's header, read from its first bytes (cached: objects never change)."""
        return self.object_layout(oid)[0]

    def object_layout(self, oid: str) -> tuple[dict[str, Any], int]:
        """An object's header and where its payload starts in its file (cached)."""
        cached = self._layouts.get(oid)
        if cached is not None:
            return cached
        try:
            head = self._get_prefix(self.object_key(oid), objects.HEADER_PEEK)
            total = objects.header_length(head)
            if total is not None and total > len(head):
                head = self._get_prefix(self.object_key(oid), total)
        except KeyError:
            raise MissingObjectError(f"object {oid} is missing from the store") from None
        except ValueError as exc:
            raise CorruptObjectError(f"object {oid} is corrupt ({exc})") from None
        head = head[: total or len(head)]
        header, payload = objects.unpack(oid, head)
        layout = (header, len(head) - len(payload))
        with self._meta_lock:
            self._layouts[oid] = layout
        return layout

    def iter_objects(self) -> Iterator[Entry]:
        """Every stored object (key is the object id)."""
        for entry in self._list("objects/"):
            name = entry.key.rsplit("/", 1)[-1]
            if len(name) == 64:
                yield Entry(name, entry.size, entry.mtime)

    def forget(self, oid: str) -> None:
        """Drop what this process remembers of an object (after it was rewritten)."""
        with self._meta_lock:
            self._known.discard(oid)
            self._layouts.pop(oid, None)
        self.cache.drop(oid)

    def delete_object(self, oid: str) -> None:
        """Remove an object (gc only)."""
        self._delete(self.object_key(oid))
        with self._meta_lock:
            self._known.discard(oid)
            self._layouts.pop(oid, None)

    # -- manifests -------------------------------------------------------------------
    def put_manifest(self, manifest: Manifest) -> str:
        """Store a manifest durably (temp, fsync, rename) and return its id."""
        problem = find_problem(manifest)  # it may have been edited since it was made
        if problem is not None:
            raise StoreError(f"refusing to store a manifest that {problem}")
        data = manifest.to_json().encode()
        mid = self.object_id(data)
        self.flush()  # every object the manifest names is durable before it is
        self._put(f"manifests/{mid}.json", [data])
        self.flush()
        return mid

    def get_manifest(self, manifest_id: str) -> Manifest:
        """Read and verify a manifest by id: its hash, its shape and every file path in
        it (`CorruptObjectError` naming the manifest otherwise)."""
        if not check_object_id(manifest_id):
            raise CorruptObjectError(f"malformed manifest id {manifest_id!r}")
        try:
            data = self._get(f"manifests/{manifest_id}.json", MAX_MANIFEST_BYTES)
        except KeyError:
            raise MissingObjectError(f"manifest {manifest_id} is missing from the store") from None
        except TooLargeError as exc:
            raise CorruptObjectError(
                f"manifest {manifest_id} is corrupt ({exc.size} bytes, more than any manifest)"
            ) from None
        if self.object_id(data) != manifest_id:
            raise CorruptObjectError(f"manifest {manifest_id} is corrupt (hash mismatch)")
        try:
            return Manifest.from_json(data.decode("utf-8"))
        except UnicodeDecodeError:
            raise CorruptObjectError(f"manifest {manifest_id} is not UTF-8 text") from None
        except ManifestError as exc:
            raise CorruptObjectError(f"manifest {manifest_id} {exc}") from None

    def put_manifest_bytes(self, manifest_id: str, data: bytes) -> None:
        """Store a manifest's exact bytes under its id (repair copies them from another
        store); `CorruptObjectError` unless they hash to the id and parse."""
        if self.object_id(data) != manifest_id:
            raise CorruptObjectError(f"manifest {manifest_id}: the bytes do not match the id")
        try:
            Manifest.from_json(data.decode("utf-8"))
        except (UnicodeDecodeError, ManifestError) as exc:
            raise CorruptObjectError(f"manifest {manifest_id} {exc}") from None
        self.flush()
        self._put(f"manifests/{manifest_id}.json", [data])
        self.flush()

    def get_manifest_bytes(self, manifest_id: str) -> bytes:
        """A manifest's verified bytes (for copying it to another store)."""
        self.get_manifest(manifest_id)  # checks everything
        return self._get(f"manifests/{manifest_id}.json", MAX_MANIFEST_BYTES)

    def iter_manifests(self) -> Iterator[Entry]:
        """Every stored manifest (key is the manifest id)."""
        for entry in self._list("manifests/"):
            name = entry.key.rsplit("/", 1)[-1]
            if name.endswith(".json"):
                yield Entry(name[: -len(".json")], entry.size, entry.mtime)

    def delete_manifest(self, manifest_id: str) -> None:
        """Remove a manifest (gc only)."""
        self._delete(f"manifests/{manifest_id}.json")
