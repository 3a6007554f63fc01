"""`checkout`: rebuild a version's directory bit for bit.

Tensors are decoded (and verified) in worker threads a few ahead of the writer, and
written in file order behind the exact header bytes, so memory stays bounded by the
read-ahead window and the decoded-tensor cache. Each file is written to a temp name and
renamed into place only when complete: an error (a corrupt or missing object, named with
the version) never leaves a wrong or partial file under a real name.

Derivable versions are re-made by the caller's `materialize(spec, dir)` and every file
is checked against the stored hashes before it is moved into place.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from lineage.errors import MaterializeError, StoreError, WeightsError
from lineage.store import objects
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
    total = manifest.total_bytes
    done = 0
    workers = _workers(store)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="checkout") as pool:
        for entry in manifest.files:
            final = out_dir / entry.path
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = final.parent / f".{final.name}.{uuid.uuid4().hex[:8]}.partial"
            try:
                with open(tmp, "wb") as f:
                    for chunk in _file_chunks(store, entry, pool, ahead=2 * workers):
                        f.write(chunk)
                        done += chunk.nbytes
                        if progress:
                            progress(done, total)
                os.replace(tmp, final)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()


def _file_chunks(store: ObjectStore, entry: FileEntry, pool: ThreadPoolExecutor, ahead: int):
    """The decoded pieces of one file, in order, decoded up to `ahead` pieces early."""
    ids = [entry.object] if entry.kind == "blob" else [entry.header_object]
    ids += [t.object for t in entry.tensors]
    queue: deque[Future[np.ndarray]] = deque()
    pos = 0
    while pos < len(ids) or queue:
        while pos < len(ids) and len(queue) < ahead:
            queue.append(pool.submit(read_bytes, store, ids[pos]))
            pos += 1
        yield queue.popleft().result()


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
                _check_remade(entry, tmp / entry.path, pool)
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


def _check_remade(entry: FileEntry, path: Path, pool: ThreadPoolExecutor) -> None:
    """Raise `MaterializeError` unless `path` is exactly the file `entry` describes."""
    if not path.is_file() or path.stat().st_size != entry.size:
        raise MaterializeError(f"re-made file {entry.path} is missing or has the wrong size")
    if entry.kind == "blob":
        if objects.object_id(path.read_bytes()) != entry.object:
            raise MaterializeError(f"re-made file {entry.path} differs from the stored hash")
        return
    try:
        layout = read_layout(path)
    except WeightsError as exc:
        raise MaterializeError(f"re-made file {entry.path} is not valid: {exc}") from None
    if objects.object_id(layout.header) != entry.header_object:
        raise MaterializeError(f"re-made file {entry.path} has a different header")
    empty = layout.file_size == layout.data_start
    data = (
        np.memmap(path, dtype=np.uint8, mode="r", offset=layout.data_start) if not empty else None
    )
    try:
        futures = [
            pool.submit(objects.object_id, b"" if data is None else data[s.begin : s.end])
            for s in layout.tensors
        ]
        for future, tensor in zip(futures, entry.tensors, strict=True):
            if future.result() != tensor.object:
                raise MaterializeError(
                    f"re-made tensor {tensor.name!r} in {entry.path} differs from the stored hash"
                )
    finally:
        del data
