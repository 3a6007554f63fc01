"""What lineage agrees to read from a weights folder, and how it reads it.

The rules, each written once here (the format names themselves live in
`lineage.formats`):

- pickle checkpoints are refused by name and never opened: loading one can run code;
- nothing is read through a symbolic link, and nothing that is not a regular file or a
  folder (a FIFO, socket or device) is read at all: a folder written by someone else (a
  recipe in a container, a shared checkout) must not make lineage read files outside it,
  such as a ``config.json`` linked to the user's cloud credentials;
- a file's relative path must be one a manifest can hold (see `manifest.check_path`).

Files are opened with ``O_NOFOLLOW`` and checked to be the very inode the scan listed, so
a file swapped for a link between scan and read is refused too. Bytes are read with
``pread`` into the caller's buffers (never through a memory map, which turns a file that
shrinks under the reader into a SIGBUS), and a file that changes while it is read is an
error rather than a version made of two different files.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from lineage.errors import WeightsError
from lineage.formats import CHECKOUT_MARKER, CONVERT_HINT, PICKLE_SUFFIXES
from lineage.store.manifest import check_path

__all__ = [
    "PICKLE_SUFFIXES",
    "SKIP_DIRS",
    "OpenSource",
    "SourceFile",
    "check_weights_source",
    "list_files",
    "pickle_message",
    "scan_source",
]

#: folders that are tool state, not part of a model (never descended into).
SKIP_DIRS = frozenset({".git", ".cache", "__pycache__", ".lineage"})

LINK_HINT = (
    "lineage never follows links in a weights folder; copy the folder with the links "
    "resolved (`cp -rL SRC DST`) if you trust where they point"
)


def pickle_message(path: Path | str) -> str:
    """The refusal of a pickle checkpoint, with how to convert it."""
    return f"refusing pickle checkpoint {path} (pickles can run code when loaded): {CONVERT_HINT}"


@dataclass(frozen=True)
class SourceFile:
    """One regular file of a weights folder, as the scan saw it."""

    rel: str  # '/'-separated path relative to the folder
    path: Path
    size: int
    device: int
    inode: int
    mtime_ns: int


def _refuse_kind(path: Path, mode: int) -> None:
    if stat.S_ISLNK(mode):
        raise WeightsError(f"refusing symbolic link {path}: {LINK_HINT}")
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise WeightsError(
            f"refusing {path}: not a regular file or folder (a FIFO, socket or device)"
        )


def _record(rel: str, path: Path, st: os.stat_result) -> SourceFile:
    return SourceFile(rel, path, st.st_size, st.st_dev, st.st_ino, st.st_mtime_ns)


def scan_source(src: Path) -> list[SourceFile]:
    """Every regular file of `src` (a folder or one file), sorted by relative path.

    Raises `WeightsError` for a missing path, a symbolic link or special file anywhere
    (`src` itself included), a pickle checkpoint, or a file name no manifest can hold.
    """
    src = Path(src)
    try:
        top = os.lstat(src)
    except FileNotFoundError:
        raise WeightsError(f"no such file or directory: {src}") from None
    except OSError as exc:
        raise WeightsError(f"cannot read {src}: {exc.strerror or exc}") from None
    _refuse_kind(src, top.st_mode)
    if stat.S_ISREG(top.st_mode):
        found = [_record(src.name, src, top)]
    else:
        found = []
        _walk(src, "", found)
    for f in found:
        if Path(f.rel).suffix.lower() in PICKLE_SUFFIXES:
            raise WeightsError(pickle_message(f.rel))
        problem = check_path(f.rel)
        if problem is not None:
            raise WeightsError(f"refusing file {f.path}: its name {problem}")
    found.sort(key=lambda f: f.rel)
    return found


def _walk(folder: Path, prefix: str, found: list[SourceFile]) -> None:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        raise WeightsError(f"cannot list {folder}: {exc.strerror or exc}") from None
    for entry in entries:
        path = folder / entry.name
        st = entry.stat(follow_symlinks=False)  # lstat: a link is seen as a link
        _refuse_kind(path, st.st_mode)
        rel = f"{prefix}{entry.name}"
        if stat.S_ISDIR(st.st_mode):
            if entry.name not in SKIP_DIRS:
                _walk(path, rel + "/", found)
        elif rel != CHECKOUT_MARKER:  # lineage's own note in a checkout, not model data
            found.append(_record(rel, path, st))


def list_files(src: Path) -> list[SourceFile]:
    """The files of a weights folder (or one ``.safetensors`` file) that ingest reads.

    As `scan_source`, and `WeightsError` if no ``.safetensors`` file is among them.
    """
    src = Path(src)
    files = scan_source(src)
    if len(files) == 1 and files[0].path == src:
        if src.suffix != ".safetensors":
            raise WeightsError(f"not a safetensors file: {src}")
    elif not any(f.rel.endswith(".safetensors") for f in files):
        raise WeightsError(f"no weights in {src}: expected *.safetensors files")
    return files


def check_weights_source(source: Path) -> None:
    """Fail early, before anything is written, on a path that holds no usable weights.

    Example:
        >>> (tmp / "pytorch_model.bin").write_bytes(b"pickled")
        7
        >>> check_weights_source(tmp / "pytorch_model.bin")
        Traceback (most recent call last):
        lineage.errors.WeightsError: refusing pickle checkpoint ...pytorch_model.bin ...
    """
    if not os.path.lexists(source):
        raise WeightsError(f"--from path does not exist: {source}")
    list_files(Path(source))


class OpenSource:
    """A source file opened for reading without following links; read with `pread`.

    Use as a context manager. `check_unchanged` raises if the file was modified,
    replaced or resized since it was scanned.
    """

    def __init__(self, source: SourceFile) -> None:
        self.source = source
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
        try:
            self.fd = os.open(source.path, flags)
        except OSError as exc:
            # ELOOP: the final component became a link after the scan
            raise WeightsError(f"cannot open {source.path}: {exc.strerror or exc}") from None
        st = os.fstat(self.fd)
        if (st.st_dev, st.st_ino) != (source.device, source.inode) or not stat.S_ISREG(st.st_mode):
            os.close(self.fd)
            raise WeightsError(f"{source.path} was replaced while lineage was reading the folder")
        self.check_unchanged()

    def check_unchanged(self) -> None:
        """Raise `WeightsError` if the file's size or modification time moved."""
        st = os.fstat(self.fd)
        if st.st_size != self.source.size or st.st_mtime_ns != self.source.mtime_ns:
            raise WeightsError(
                f"{self.source.path} changed while lineage was reading it "
                f"({self.source.size} -> {st.st_size} bytes); nothing was recorded, try again "
                "once it is written"
            )

    def pread_into(self, buffer: memoryview, offset: int) -> None:
        """Fill `buffer` from `offset`; `WeightsError` if the file ends first (it shrank)."""
        pos = 0
        total = len(buffer)
        while pos < total:
            got = os.preadv(self.fd, [buffer[pos:]], offset + pos)
            if got <= 0:
                raise WeightsError(
                    f"{self.source.path} shrank while lineage was reading it (ends at "
                    f"{offset + pos} bytes, {self.source.size} expected); nothing was "
                    "recorded, try again once it is written"
                )
            pos += got

    def read(self, offset: int, length: int) -> bytes:
        """`length` bytes from `offset` (small reads: headers, side files)."""
        out = bytearray(length)
        self.pread_into(memoryview(out), offset)
        return bytes(out)

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> OpenSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
