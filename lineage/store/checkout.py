"""`checkout`: rebuild a version's directory bit for bit.

Objects are decoded (and verified) in worker threads, each written with `pwrite` at its
offset in a temp file (the exact header bytes, then the tensors end to end), so memory
stays bounded by one decoded piece per thread plus the decoded-tensor cache. Files are
renamed into place only when the whole version is written: an error (a corrupt or
missing object, named with the version) never leaves a wrong or partial file under a
real name.

Derivable versions are re-made by the caller's `materialize(spec, dir)` and every file
is checked against the stored hashes before it is moved into place (read without
following links: a re-made file must be a regular file inside the re-made folder).

Every path is checked twice: manifests are validated when read (no absolute path, no
``..``), and each file's resolved location must lie inside the output folder.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

from lineage.errors import CorruptObjectError, MaterializeError, StoreError, WeightsError
from lineage.store.backend import ObjectStore
from lineage.store.manifest import FileEntry, Manifest, find_problem, header_size
from lineage.store.reader import read_bytes
from lineage.store.safetensors_format import read_layout
from lineage.store.sources import OpenSource, scan_source

log = logging.getLogger(__name__)

Materialize = Callable[[dict[str, Any], Path], None]
#: one piece of a checkout: its size, the file it goes to, its offset there, its object
Piece = tuple[int, "_FileWriter", int, str]


def checkout(
    store: ObjectStore,
    manifest: Manifest,
    out_dir: Path,
    progress: Callable[[int, int], None] | None = None,
    materialize: Materialize | None = None,
    *,
    label: str | None = None,
    keep_decoded: bool = False,
) -> None:
    """Write the files of `manifest` into `out_dir` (created if needed).

    `label` (e.g. ``"bert-sentiment@3"``) names the version in error messages.
    `keep_decoded` leaves the decoded tensors in the store's cache (bounded, LRU): a
    parent checked out for a step that is then committed as its delta base.
    `materialize(spec, dir)` is required for derivable versions. A lossy version's
    weights are approximate (`manifest.approximate`); a warning is logged.

    Raises:
        CorruptObjectError / MissingObjectError: an object failed verification.
        MaterializeError: re-made files differ from the stored hashes.
    """
    out_dir = Path(out_dir)
    name = label or "version"
    problem = find_problem(manifest)  # it may have been changed since it was read
    if problem is not None:
        raise CorruptObjectError(f"{name}: its manifest {problem}")
    out_dir.mkdir(parents=True, exist_ok=True)
    if manifest.approximate:
        log.warning("%s was stored in lossy mode: its weights are approximate", name)
    try:
        if any(not t.stored for _, t in manifest.tensors()):
            _checkout_derived(store, manifest, out_dir, progress, materialize, name)
        else:
            _checkout_stored(store, manifest, out_dir, progress, keep_decoded)
    except StoreError as exc:
        raise type(exc)(f"{name}: {exc}") from None


def _workers(store: ObjectStore) -> int:
    return store.workers or os.cpu_count() or 2


def _checkout_stored(
    store: ObjectStore,
    manifest: Manifest,
    out_dir: Path,
    progress: Callable[[int, int], None] | None,
    keep: bool = False,
) -> None:
    """Decode every piece in worker threads, each written straight to its offset.

    Every file is first created under a temp name; a worker decodes (and verifies) one
    object and `pwrite`s it at its place, so no thread waits for another's piece and no
    decoded piece is held longer than it takes to write it. Files are renamed into
    place only once every piece of the version is written.
    """
    total = manifest.total_bytes
    done = 0
    targets: list[tuple[int, Path, Path]] = []  # fd, temp, final
    try:
        per_file: list[list[Piece]] = []
        for entry in manifest.files:
            final = inside(out_dir, entry.path)
            tmp = final.parent / f".{final.name}.{uuid.uuid4().hex[:8]}.partial"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            targets.append((fd, tmp, final))
            writer = _FileWriter(fd)
            pieces = []
            for size, offset, oid in _layout(entry):
                pieces.append((size, writer, offset, oid))
            per_file.append(sorted(pieces, key=lambda p: -p[0]))
        pieces = _interleave(per_file)
        with ThreadPoolExecutor(max_workers=_workers(store), thread_name_prefix="checkout") as pool:
            futures = [pool.submit(_write_piece, store, *piece, keep) for piece in pieces]
            try:
                for future in as_completed(futures):
                    done += future.result()
                    if progress:
                        progress(done, total)
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
        for (fd, _, _), entry in zip(targets, manifest.files, strict=True):
            if os.fstat(fd).st_size != entry.size:
                raise StoreError(f"checkout of {entry.path} came out with the wrong size")
        while targets:
            fd, tmp, final = targets.pop()
            try:
                os.close(fd)
                os.replace(tmp, final)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
    finally:
        for fd, tmp, _ in targets:
            with contextlib.suppress(OSError):
                os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def _interleave(per_file: list[list[Piece]]) -> list[Piece]:
    """Pieces in the order they are decoded: each file's biggest first (so one large
    embedding overlaps many small tensors), files taken in turn, so that the workers
    write different files at once (writes to one file are serialized by the kernel)."""
    out: list[Piece] = []
    for rank in range(max((len(f) for f in per_file), default=0)):
        out += [f[rank] for f in per_file if rank < len(f)]
    return out


def inside(out_dir: Path, rel: str) -> Path:
    """`out_dir / rel` with its folders made, refusing anything that resolves outside
    `out_dir` (manifest paths are validated on read; this holds even if one was not, or
    a folder on the way is a link)."""
    root = os.path.realpath(out_dir)
    final = Path(root, rel)
    final.parent.mkdir(parents=True, exist_ok=True)
    parent = os.path.realpath(final.parent)
    if os.path.commonpath([root, parent]) != root or os.path.islink(final):
        raise CorruptObjectError(f"refusing to write {rel!r}: it resolves outside {out_dir}")
    return Path(parent, final.name)


def _layout(entry: FileEntry) -> list[tuple[int, int, str]]:
    """(size, offset, object id) of every piece of a file: its header, then its tensors."""
    if entry.kind == "blob":
        assert entry.object is not None
        return [(entry.size, 0, entry.object)]
    assert entry.header_object is not None
    offset = header_size(entry)
    out = [(offset, 0, entry.header_object)]
    for t in entry.tensors:
        out.append((t.nbytes, offset, t.object))
        offset += t.nbytes
    return out


def _write_piece(
    store: ObjectStore, size: int, file: _FileWriter, offset: int, oid: str, keep: bool = False
) -> int:
    """Decode one object and write it at `offset` of its file (the decoded bytes left
    in the cache with `keep`); returns its length."""
    data = read_bytes(store, oid, size, keep=keep)
    if len(data) != size:
        raise CorruptObjectError(f"object {oid} has {len(data)} bytes, the manifest says {size}")
    file.write(data, offset)
    if not keep:
        store.cache.recycle(data)  # re-used unless the cache (or a queued write) holds it
    return size


class _FileWriter:
    """Writes the pieces of one file, one write at a time, without making a thread wait.

    The kernel serializes writes to one file on its inode lock, and a thread blocked on
    it spins before it sleeps: with every worker writing into the same weights file,
    that spinning cost a tenth of the checkout's CPU. Here a thread that finds the file
    busy queues its piece and goes back to decoding; the thread that is writing also
    writes what was queued before it lets go.

    The queue is bounded (`MAX_QUEUED_BYTES`): when the disk falls behind (the kernel
    throttles writers once too much is dirty), decoders wait their turn to write rather
    than pile decoded pieces up in memory.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._queue: deque[tuple[np.ndarray, int]] = deque()
        self._queued = 0
        self._busy = threading.Lock()

    def write(self, data: np.ndarray, offset: int) -> None:
        self._queue.append((data, offset))
        self._queued += data.nbytes  # (under the GIL; only a bound, never exact)
        # Re-checked after every release: a piece queued just before we let go is ours.
        while self._queue:
            behind = self._queued > max(MAX_QUEUED_BYTES, data.nbytes)
            if not self._busy.acquire(blocking=behind):
                return
            try:
                while self._queue:
                    piece, at = self._queue.popleft()
                    _pwrite_all(self.fd, piece.data.cast("B"), at)
                    self._queued -= piece.nbytes
            finally:
                self._busy.release()


#: decoded pieces waiting for a busy file at most (beyond one piece).
MAX_QUEUED_BYTES = 16 << 20


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    pos = 0
    while pos < len(data):
        pos += os.pwrite(fd, data[pos:], offset + pos)


def _checkout_derived(
    store: ObjectStore,
    manifest: Manifest,
    out_dir: Path,
    progress: Callable[[int, int], None] | None,
    materialize: Materialize | None,
    name: str,
) -> None:
    if materialize is None:
        raise StoreError(
            "is stored as its recipe (derivable version): checkout needs a materialize callback"
        )
    tmp = Path(tempfile.mkdtemp(prefix=".lineage-materialize-", dir=out_dir))
    try:
        materialize(dict(manifest.derivation or {}), tmp)
        with ThreadPoolExecutor(max_workers=_workers(store)) as pool:
            for entry in manifest.files:
                _check_remade(store, entry, tmp / entry.path, pool)
        done = 0
        for entry in manifest.files:
            os.replace(tmp / entry.path, inside(out_dir, entry.path))
            done += entry.size
            if progress:
                progress(done, manifest.total_bytes)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_remade(
    store: ObjectStore, entry: FileEntry, path: Path, pool: ThreadPoolExecutor
) -> None:
    """Raise `MaterializeError` unless `path` is exactly the file `entry` describes."""
    try:
        (source,) = scan_source(path)  # a regular file, not a link to one
    except (WeightsError, ValueError):
        raise MaterializeError(f"re-made file {entry.path} is missing or not a file") from None
    if source.size != entry.size:
        raise MaterializeError(f"re-made file {entry.path} has the wrong size")
    try:
        with OpenSource(source) as f:
            if entry.kind == "blob":
                if hash_range(store, f, 0, source.size) != entry.object:
                    raise MaterializeError(
                        f"re-made file {entry.path} differs from the stored hash"
                    )
                return
            if entry.kind == "chunked":
                start, ranges = 0, []
                for t in entry.tensors:
                    ranges.append((start, t.nbytes))
                    start += t.nbytes
            else:
                layout = read_layout(f)
                if store.object_id(layout.header) != entry.header_object:
                    raise MaterializeError(f"re-made file {entry.path} has a different header")
                ranges = [(layout.data_start + s.begin, s.nbytes) for s in layout.tensors]
                if len(ranges) != len(entry.tensors):
                    raise MaterializeError(f"re-made file {entry.path} has other tensors")
            futures = [pool.submit(hash_range, store, f, at, length) for at, length in ranges]
            for future, tensor in zip(futures, entry.tensors, strict=True):
                if future.result() != tensor.object:
                    raise MaterializeError(
                        f"re-made tensor {tensor.name!r} in {entry.path} differs from the "
                        "stored hash"
                    )
    except WeightsError as exc:
        raise MaterializeError(f"re-made file {entry.path} is not valid: {exc}") from None


#: files are hashed in steps of this many bytes (one buffer, re-used).
HASH_STEP = 4 << 20


def hash_range(store: ObjectStore, f: OpenSource, offset: int, length: int) -> str:
    """The store id of `length` bytes of an open file from `offset`, read step by step."""
    hasher = store.new_hasher()
    with store.buffers.borrow(min(length, HASH_STEP)) as buffer:
        pos = 0
        while pos < length:
            step = min(HASH_STEP, length - pos)
            f.pread_into(buffer[:step], offset + pos)
            hasher.update(buffer[:step])
            pos += step
    return hasher.hexdigest()
