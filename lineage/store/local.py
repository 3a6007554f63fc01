"""The local-folder backend: objects as files, written to a temp name, made durable, renamed.

A killed writer leaves at most files under ``tmp/`` (never a half-written object under
its final name); `stats` and `gc` report them and gc removes those older than its grace
period. Objects are made durable in batches: `put`
only writes the temp file, and `flush` (which `put_manifest` calls before and after it
writes a manifest) syncs the file system once, renames every pending object into place
and syncs again, so a manifest is never visible before every object it names is durable.
One file-system sync per version costs far less than an fsync per object, which on
ext4 is a journal commit each. Until renamed, an object is read from its temp file.
Each temp file's writeback is started as soon as it is written (``sync_file_range``,
which does not wait), so the disk works while the next tensors are encoded and the
final sync only waits for what is left: an add takes about the longer of encoding and
writing, not their sum.

Objects are read with ``pread`` into recycled buffers rather than mapped: a mapping of a
file that some other process truncates turns every later access into a SIGBUS. The
ingest/gc lock is a file in ``locks/``, a folder only its owner may enter (0700), opened
without following links, so no other local user can hold or plant it.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import stat
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from lineage.errors import StoreError
from lineage.store.backend import Entry, ObjectStore, TooLargeError
from lineage.store.buffers import BufferPool

TEMP_SUFFIX = ".part"


class LocalObjectStore(ObjectStore):
    """An object store in a local folder."""

    def __init__(self, root: Path, **options: Any) -> None:
        super().__init__(**options)
        self.root = Path(root).absolute()
        self.location = str(self.root)
        try:
            for sub in ("objects", "manifests", "tmp"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            self._lock_dir = private_dir(self.root / "locks")
        except OSError as exc:
            raise StoreError(f"cannot create object store at {self.root}: {exc}") from None
        self._pending: dict[str, Path] = {}  # key -> temp file not yet renamed
        self._pending_lock = threading.Lock()
        self._flush_lock = threading.Lock()

    def _path(self, key: str) -> Path:
        return self.root / key

    def _readable(self, key: str) -> list[Path]:
        """Where `key` may be read: its temp file while pending, then its final name."""
        pending = self._pending.get(key)
        return [pending, self._path(key)] if pending else [self._path(key)]

    def _open(self, key: str) -> int:
        """A read-only descriptor of `key`'s file (the caller closes it); `KeyError` when
        there is none."""
        for path in self._readable(key):
            try:
                return os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except FileNotFoundError:
                continue  # renamed in between: the final name is next
        raise KeyError(key)

    def _read(self, key: str, length: int = -1, max_bytes: int | None = None) -> bytes:
        with open(self._open(key), "rb") as f:
            if max_bytes is not None:
                size = os.fstat(f.fileno()).st_size
                if size > max_bytes:
                    raise TooLargeError(size)
            return f.read(length)

    def _put(self, key: str, parts: list[bytes | memoryview]) -> None:
        # Only the temp file is written here; `flush` makes it durable and renames it.
        if key in self._pending:
            return  # content-addressed: the same key is the same bytes, already written
        tmp = self.root / "tmp" / f"{uuid.uuid4().hex}{TEMP_SUFFIX}"
        try:
            _write_parts(tmp, parts)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise StoreError(f"cannot write {key} to {self.root}: {exc.strerror or exc}") from None
        with self._pending_lock:
            duplicate = key in self._pending  # another thread wrote it meanwhile
            if not duplicate:
                self._pending[key] = tmp
        if duplicate:
            with contextlib.suppress(OSError):
                tmp.unlink()

    def flush(self) -> None:
        with self._flush_lock:
            with self._pending_lock:
                pending = list(self._pending.items())
            if not pending:
                return
            try:
                _sync(self.root, [tmp for _, tmp in pending])
                for key, tmp in pending:
                    final = self._path(key)
                    final.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(tmp, final)
                    with self._pending_lock:
                        if self._pending.get(key) == tmp:
                            del self._pending[key]
                _sync(self.root, {self._path(key).parent for key, _ in pending})
            except OSError as exc:
                raise StoreError(
                    f"cannot make objects durable in {self.root}: {exc.strerror or exc}"
                ) from None

    def _get(self, key: str, max_bytes: int | None = None) -> bytes:
        return self._read(key, max_bytes=max_bytes)

    @contextlib.contextmanager
    def _read_into(self, key: str, max_bytes: int, pool: BufferPool) -> Iterator[memoryview]:
        fd = self._open(key)
        try:
            size = os.fstat(fd).st_size
            if size > max_bytes:
                raise TooLargeError(size)
            with pool.borrow(size) as view:
                got = _pread_all(fd, view)
                yield view[:got].toreadonly()
        finally:
            os.close(fd)

    def _get_prefix(self, key: str, length: int) -> bytes:
        return self._read(key, length)

    def _get_ranges(self, key: str, ranges: list[tuple[int, int]]) -> list[bytes]:
        fd = self._open(key)
        try:
            return [os.pread(fd, length, offset) for offset, length in ranges]
        finally:
            os.close(fd)

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
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self._lock_dir / "store.lock", flags, 0o600)
        except OSError as exc:
            raise StoreError(
                f"cannot open the store lock in {self._lock_dir}: {exc.strerror or exc}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def temp_files(self) -> list[Entry]:
        found = []
        with os.scandir(self.root / "tmp") as entries:
            for entry in entries:
                with contextlib.suppress(FileNotFoundError):
                    st = entry.stat(follow_symlinks=False)
                    found.append(Entry(f"tmp/{entry.name}", st.st_size, st.st_mtime))
        pending = {str(tmp.relative_to(self.root)) for tmp in list(self._pending.values())}
        return sorted((e for e in found if e.key not in pending), key=lambda e: e.key)

    def remove_stale_temp(self, older_than: float) -> list[Entry]:
        removed = []
        for entry in self.temp_files():
            if entry.mtime < older_than:
                with contextlib.suppress(FileNotFoundError):
                    (self.root / entry.key).unlink()
                    removed.append(entry)
        return removed


def private_dir(path: Path) -> Path:
    """`path` as a folder only this user may enter (created 0700 if missing).

    Refuses a link, or a folder another user owns or others may write to: whoever
    controls the folder of a lock file can hold, plant or swap the lock.
    """
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise StoreError(f"{path} must be a folder (it is a link or a file): refusing to use it")
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise StoreError(f"{path} belongs to another user: refusing to keep a lock in it")
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)  # ours, but open to others: make it private
    return path


def _pread_all(fd: int, view: memoryview) -> int:
    """Fill `view` from the start of the file; the count read (less at end of file)."""
    pos = 0
    while pos < len(view):
        got = os.preadv(fd, [view[pos:]], pos)
        if got <= 0:
            break
        pos += got
    return pos


def _write_parts(path: Path, parts: list[bytes | memoryview]) -> None:
    """Create `path`, write the parts with as few system calls as possible, and start
    (not wait for) their writeback to disk."""
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
        _start_writeback(fd)
    finally:
        os.close(fd)


def _start_writeback(fd: int) -> None:
    """Ask the kernel to start writing a file's dirty pages out now (no waiting)."""
    if _SYNC_FILE_RANGE is not None:
        _SYNC_FILE_RANGE(fd, 0, 0, _SYNC_FILE_RANGE_WRITE)  # advisory: errors are moot


def _fsync_path(path: Path) -> None:
    """fsync a file or a folder by name."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _syncfs(root: Path) -> bool:
    """Sync the whole file system `root` is on (Linux `syncfs`); False where unsupported."""
    if _SYNCFS is None:
        return False
    fd = os.open(root, os.O_RDONLY)
    try:
        if _SYNCFS(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
    finally:
        os.close(fd)
    return True


def _sync(root: Path, paths: list[Path] | set[Path]) -> None:
    """Make `paths` (written files, or folders with new names) durable: one `syncfs` of
    the file system, else an fsync of each."""
    if not _syncfs(root):
        for path in paths:
            _fsync_path(path)


def _load_syncfs() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.syncfs
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int]
    function.restype = ctypes.c_int
    return function


_SYNCFS = _load_syncfs()
_SYNC_FILE_RANGE_WRITE = 2


def _load_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_SYNC_FILE_RANGE = _load_sync_file_range()
