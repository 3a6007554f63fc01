"""`checkout`: rebuild a version's directory bit for bit.

Objects are decoded (and verified) in worker threads, each written with `pwrite` at its
offset in a temp file (the exact header bytes, then the tensors end to end), so memory
stays bounded by one decoded piece per thread plus the decoded-tensor cache. Files are
renamed into place only when the whole version is written: an error (a corrupt or
missing object, named with the version) never leaves a wrong or partial file under a
real name.

Derivable versions are re-made by the caller's `materialize(spec, dir)` and every file
is checked against the stored hashes before it is moved into place.
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
from lineage.store.manifest import FileEntry, Manifest
from lineage.store.reader import read_bytes
from lineage.store.safetensors_format import read_layout

log = logging.getLogger(__name__)

Materialize = Callable[[dict[str, Any], Path], None]


def checkout(
    store: ObjectStore,
    manifest: Manifest,
    out_dir: Path,
    progress: Callable[[int, int], None] | None = None,
    materialize: Materialize | None = None,
    *,
    label: str | None = None,
) -> None:
    """Write the files of `manifest` into `out_dir` (created if needed).

    `label` (e.g. ``"bert-sentiment@3"``) names the version in error messages.
    `materialize(spec, dir)` is required for derivable versions. A lossy version's
    weights are approximate (`manifest.approximate`); a warning is logged.

    Raises:
        CorruptObjectError / MissingObjectError: an object failed verification.
        MaterializeError: re-made files differ from the stored hashes.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = label or "version"
    if manifest.approximate:
        log.warning("%s was stored in lossy mode: its weights are approximate", name)
    try:
        if any(not t.stored for _, t in manifest.tensors()):
            _checkout_derived(store, manifest, out_dir, progress, materialize, name)
        else:
            _checkout_stored(store, manifest, out_dir, progress)
    except StoreError as exc:
        raise type(exc)(f"{name}: {exc}") from None


def _workers(store: ObjectStore) -> int:
    return store.workers or os.cpu_count() or 2


def _checkout_stored(
    store: ObjectStore,
    manifest: Manifest,
    out_dir: Path,
    progress: Callable[[int, int], None] | None,
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
        pieces: list[tuple[int, _FileWriter, int, str]] = []  # size, file, offset, object
        for entry in manifest.files:
            final = out_dir / entry.path
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = final.parent / f".{final.name}.{uuid.uuid4().hex[:8]}.partial"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            targets.append((fd, tmp, final))
            writer = _FileWriter(fd)
            for size, offset, oid in _layout(entry):
                pieces.append((size, writer, offset, oid))
        # the biggest pieces first, so one large embedding overlaps many small tensors
        pieces.sort(key=lambda p: -p[0])
        with ThreadPoolExecutor(max_workers=_workers(store), thread_name_prefix="checkout") as pool:
            futures = [pool.submit(_write_piece, store, *piece) for piece in pieces]
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


def _layout(entry: FileEntry) -> list[tuple[int, int, str]]:
    """(size, offset, object id) of every piece of a file: its header, then its tensors."""
    if entry.kind == "blob":
        assert entry.object is not None
        return [(entry.size, 0, entry.object)]
    assert entry.header_object is not None
    offset = entry.size - sum(t.nbytes for t in entry.tensors)  # the header's length
    out = [(offset, 0, entry.header_object)]
    for t in entry.tensors:
        out.append((t.nbytes, offset, t.object))
        offset += t.nbytes
    return out


def _write_piece(store: ObjectStore, size: int, file: _FileWriter, offset: int, oid: str) -> int:
    """Decode one object and write it at `offset` of its file; returns its length."""
    data = read_bytes(store, oid)
    if len(data) != size:
        raise CorruptObjectError(f"object {oid} has {len(data)} bytes, the manifest says {size}")
    file.write(data, offset)
    return size


class _FileWriter:
    """Writes the pieces of one file, one write at a time, without making a thread wait.

    The kernel serializes writes to one file on its inode lock, and a thread blocked on
    it spins before it sleeps: with every worker writing into the same weights file,
    that spinning cost a tenth of the checkout's CPU. Here a thread that finds the file
    busy queues its piece and goes back to decoding; the thread that is writing also
    writes what was queued before it lets go.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._queue: deque[tuple[np.ndarray, int]] = deque()
        self._busy = threading.Lock()

    def write(self, data: np.ndarray, offset: int) -> None:
        self._queue.append((data, offset))
        # Re-checked after every release: a piece queued just before we let go is ours.
        while self._queue and self._busy.acquire(blocking=False):
            try:
                while self._queue:
                    piece, at = self._queue.popleft()
                    _pwrite_all(self.fd, memoryview(piece).cast("B"), at)
            finally:
                self._busy.release()


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
            final = out_dir / entry.path
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp / entry.path, final)
            done += entry.size
            if progress:
                progress(done, manifest.total_bytes)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_remade(
    store: ObjectStore, entry: FileEntry, path: Path, pool: ThreadPoolExecutor
) -> None:
    """Raise `MaterializeError` unless `path` is exactly the file `entry` describes."""
    if not path.is_file() or path.stat().st_size != entry.size:
        raise MaterializeError(f"re-made file {entry.path} is missing or has the wrong size")
    if entry.kind == "blob":
        if store.object_id(path.read_bytes()) != entry.object:
            raise MaterializeError(f"re-made file {entry.path} differs from the stored hash")
        return
    try:
        layout = read_layout(path)
    except WeightsError as exc:
        raise MaterializeError(f"re-made file {entry.path} is not valid: {exc}") from None
    if store.object_id(layout.header) != entry.header_object:
        raise MaterializeError(f"re-made file {entry.path} has a different header")
    empty = layout.file_size == layout.data_start
    data = (
        np.memmap(path, dtype=np.uint8, mode="r", offset=layout.data_start) if not empty else None
    )
    try:
        futures = [
            pool.submit(store.object_id, b"" if data is None else data[s.begin : s.end])
            for s in layout.tensors
        ]
        for future, tensor in zip(futures, entry.tensors, strict=True):
            if future.result() != tensor.object:
                raise MaterializeError(
                    f"re-made tensor {tensor.name!r} in {entry.path} differs from the stored hash"
                )
    finally:
        del data
