"""The local-folder backend: objects as files, written temp → fsync → rename.

A killed writer leaves at most a file under ``tmp/`` (never a half-written object under
its final name); gc removes stale temp files. Each object is fsynced and renamed on a
background I/O pool; `flush` waits for them and fsyncs the directories, and
`put_manifest` flushes before and after writing the manifest, so a manifest is never
visible before every object it names is durable.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from lineage.errors import StoreError
from lineage.store.backend import Entry, ObjectStore


class LocalObjectStore(ObjectStore):
    """An object store in a local folder."""

    def __init__(self, root: Path, **options: Any) -> None:
        super().__init__(**options)
        self.root = Path(root).absolute()
        self.location = str(self.root)
        try:
            for sub in ("objects", "manifests", "tmp", "locks"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create object store at {self.root}: {exc}") from None
        self._dirty: set[Path] = set()
        self._dirty_lock = threading.Lock()
        self._pending: dict[str, Path] = {}  # key -> temp file not yet renamed
        self._io_jobs: list[Future[None]] = []
        # fsync is waiting, not computing: a few threads keep the disk busy
        self._io = ThreadPoolExecutor(max_workers=8, thread_name_prefix="store-io")

    def _path(self, key: str) -> Path:
        return self.root / key

    def _readable(self, key: str) -> list[Path]:
        """Where `key` may be read: its temp file while pending, then its final name."""
        pending = self._pending.get(key)
        return [pending, self._path(key)] if pending else [self._path(key)]

    def _read(self, key: str, length: int = -1) -> bytes:
        for path in self._readable(key):
            try:
                with open(path, "rb") as f:
                    return f.read(length)
            except FileNotFoundError:
                continue  # renamed in between: the final name is next
        raise KeyError(key)

    def _put(self, key: str, parts: list[bytes | memoryview]) -> None:
        # The temp file is written here; fsync + rename run on a small I/O pool so that
        # encoding threads never wait for the disk. Until renamed, the object is read
        # from its temp file; `flush` waits for every rename and fsyncs the directories.
        final = self._path(key)
        tmp = self.root / "tmp" / f"{uuid.uuid4().hex}.part"
        try:
            _write_parts(tmp, parts)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise StoreError(f"cannot write {key} to {self.root}: {exc.strerror or exc}") from None
        with self._dirty_lock:
            self._pending[key] = tmp
            self._io_jobs.append(self._io.submit(self._commit, key, tmp, final))

    def _commit(self, key: str, tmp: Path, final: Path) -> None:
        try:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise StoreError(f"cannot write {key} to {self.root}: {exc.strerror or exc}") from None
        finally:
            with self._dirty_lock:
                self._pending.pop(key, None)
        with self._dirty_lock:
            self._dirty.add(final.parent)

    def flush(self) -> None:
        with self._dirty_lock:
            jobs, self._io_jobs = self._io_jobs, []
        errors = [job.exception() for job in jobs]
        with self._dirty_lock:
            dirs, self._dirty = self._dirty, set()
        list(self._io.map(_fsync_dir, dirs))
        for error in errors:
            if error is not None:
                raise error

    def _get(self, key: str) -> bytes:
        return self._read(key)

    def _get_prefix(self, key: str, length: int) -> bytes:
        return self._read(key, length)

    def _exists(self, key: str) -> bool:
        return key in self._pending or self._path(key).is_file()

    def _delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def _list(self, prefix: str) -> Iterator[Entry]:
        base = self._path(prefix)
        if not base.is_dir():
            return
        for dirpath, _, filenames in os.walk(base):
            for name in filenames:
                path = Path(dirpath) / name
                try:
                    st = path.stat()
                except FileNotFoundError:
                    continue  # deleted while listing
                yield Entry(str(path.relative_to(self.root)), st.st_size, st.st_mtime)

    def _touch(self, key: str) -> None:
        try:
            os.utime(self._path(key))
        except FileNotFoundError:
            raise KeyError(key) from None

    @contextlib.contextmanager
    def lock(self, *, exclusive: bool) -> Iterator[None]:
        with open(self.root / "locks" / "store.lock", "a+") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def remove_stale_temp(self, older_than: float) -> int:
        removed = 0
        for path in (self.root / "tmp").iterdir():
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < older_than:
                    path.unlink()
                    removed += 1
        return removed


def _write_parts(path: Path, parts: list[bytes | memoryview]) -> None:
    """Create `path` and write the parts with as few system calls as possible."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        pending = [memoryview(p).cast("B") for p in parts if len(p)]
        while pending:
            written = os.writev(fd, pending[:512])  # IOV_MAX is 1024 on Linux
            while written:  # a short write: drop what went out and go on
                head = pending[0]
                if written >= len(head):
                    written -= len(head)
                    pending.pop(0)
                else:
                    pending[0] = head[written:]
                    written = 0
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
