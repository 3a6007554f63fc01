"""`Manifest`: what a version is made of, as JSON-serialisable dataclasses.

A manifest lists every file of a version's directory. Plain files point at one object.
A safetensors file points at the object holding its exact header bytes and lists its
tensors in data order (name, dtype, shape, object id, nbytes): the header followed by the
tensors end to end *is* the file, so checkout rebuilds it bit for bit. A large side file
(``chunked``) is written the same way: an empty header, then byte pieces.

Optional parts: ``derivation`` (the opaque recipe spec of a derivable version whose
tensor bytes are not stored but re-made on checkout), ``lossy`` (the error bound of a
version stored approximately) and ``sketch`` (tensor-content hashes for parent discovery).
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from typing import Any

from lineage.formats import SAFETENSORS_DTYPE_SIZES as ITEMSIZE

FORMAT = 1

#: object and manifest ids: 64 lowercase hex digits (BLAKE3 or SHA-256).
OBJECT_ID = re.compile(r"[0-9a-f]{64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_PATH_BYTES = 4096


def check_path(path: object) -> str | None:
    """Why `path` cannot be a manifest's file path, or None if it can.

    A manifest path is relative, '/'-separated, and names a file strictly inside the
    version's folder: no absolute path, no ``..`` or ``.`` part, no empty part, no
    backslash (a separator elsewhere) and no control character (NUL included). The DB
    and the bucket may be shared, so this is checked on every manifest read, too.
    """
    if not isinstance(path, str) or not path:
        return "is empty or not a string"
    if len(path.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
        return "is too long"
    if _CONTROL.search(path):
        return "contains a control character"
    if "\\" in path:
        return "contains a backslash"
    if path.startswith("/"):
        return "is absolute"
    parts = path.split("/")
    if any(part == "" for part in parts):
        return "has an empty part"
    if any(part in (".", "..") for part in parts):
        return "has a '.' or '..' part"
    return None


def check_object_id(oid: object) -> bool:
    """Whether `oid` has the shape of an object id (and so is safe in a key)."""
    return isinstance(oid, str) and OBJECT_ID.fullmatch(oid) is not None


@dataclass
class TensorEntry:
    """One tensor of a safetensors file."""

    name: str
    dtype: str
    shape: list[int]
    object: str  # content hash of the tensor's bytes
    nbytes: int
    stored: bool = True  # False: bytes are re-made by the version's derivation


@dataclass
class FileEntry:
    """One file of a version's directory (path relative to it, '/'-separated)."""

    path: str
    size: int
    kind: str  # "blob" | "safetensors" | "chunked" (a large side file, stored in pieces)
    object: str | None = None  # blob: content hash of the file
    header_object: str | None = None  # safetensors: the 8 length bytes + JSON header
    # (chunked: the empty blob; its "tensors" are U8 pieces of the file, end to end)
    tensors: list[TensorEntry] = field(default_factory=list)


@dataclass
class Manifest:
    """A version's files, plus how to re-make or how approximate it is."""

    files: list[FileEntry]
    derivation: dict[str, Any] | None = None
    lossy: dict[str, Any] | None = None
    sketch: list[int] = field(default_factory=list)
    format: int = FORMAT

    def __post_init__(self) -> None:
        problem = find_problem(self)
        if problem is not None:
            raise ManifestError(problem)

    @property
    def total_bytes(self) -> int:
        """Logical size: the sum of the file sizes."""
        return sum(f.size for f in self.files)

    @property
    def approximate(self) -> bool:
        """True when checkout gives approximate weights (stored in lossy mode)."""
        return bool(self.lossy and self.lossy.get("approximate_tensors"))

    def tensors(self) -> list[tuple[FileEntry, TensorEntry]]:
        """Every tensor with its file (pieces of ``chunked`` side files included)."""
        return [(f, t) for f in self.files for t in f.tensors]

    def object_ids(self, *, stored_only: bool = True) -> set[str]:
        """Ids of the objects this manifest names directly (delta bases not included)."""
        ids: set[str] = set()
        for f in self.files:
            if f.object:
                ids.add(f.object)
            if f.header_object:
                ids.add(f.header_object)
            ids.update(t.object for t in f.tensors if t.stored or not stored_only)
        return ids

    def object_sizes(self, *, stored_only: bool = True) -> dict[str, int]:
        """Decoded size of every object this manifest names directly: what a reader
        expects (and checks) before it allocates anything for one."""
        sizes: dict[str, int] = {}
        for f in self.files:
            if f.object:
                sizes[f.object] = f.size
            if f.header_object:
                sizes[f.header_object] = header_size(f)
            for t in f.tensors:
                if t.stored or not stored_only:
                    sizes[t.object] = t.nbytes
        return sizes

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (the same as `dataclasses.asdict`, without its deep copy
        of every field: a manifest has thousands of tensors)."""
        return {
            "files": [_file_dict(f) for f in self.files],
            "derivation": copy.deepcopy(self.derivation),
            "lossy": copy.deepcopy(self.lossy),
            "sketch": list(self.sketch),
            "format": self.format,
        }

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, compact): equal manifests give equal ids."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Manifest:
        """Inverse of `to_dict`; `ManifestError` for anything malformed or unsafe."""
        try:
            files = [
                FileEntry(
                    **{k: v for k, v in f.items() if k != "tensors"},
                    tensors=[TensorEntry(**t) for t in f.get("tensors", [])],
                )
                for f in doc["files"]
            ]
            rest = {k: v for k, v in doc.items() if k != "files"}
            return cls(files=files, **rest)
        except ManifestError:
            raise
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ManifestError(f"is malformed ({exc.__class__.__name__}: {exc})") from None

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        """Inverse of `to_json`; `ManifestError` for anything malformed or unsafe."""
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise ManifestError(f"is not JSON ({exc.__class__.__name__})") from None
        if not isinstance(doc, dict):
            raise ManifestError("is not a JSON object")
        return cls.from_dict(doc)


def header_size(f: FileEntry) -> int:
    """Bytes of a safetensors file before its first tensor (its header)."""
    return f.size - sum(t.nbytes for t in f.tensors)


class ManifestError(ValueError):
    """A manifest that must not be used: malformed, or with an unsafe file path."""


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def find_problem(manifest: Manifest) -> str | None:
    """Why `manifest` must not be used, or None.

    Checked: every path (see `check_path`), no path given twice or used both as a file
    and as a folder, object ids shaped as ids (they become store keys), sizes that are
    non-negative integers, and tensor sizes that agree with their dtype and shape (so
    every later allocation is sized from numbers checked here).
    """
    if not isinstance(manifest.files, list):
        return "has no file list"
    paths: set[str] = set()
    for f in manifest.files:
        if not isinstance(f, FileEntry):
            return "has a malformed file entry"
        problem = check_path(f.path)
        if problem is not None:
            return f"has an unsafe file path {f.path!r}: it {problem}"
        if f.path in paths:
            return f"names the file {f.path!r} twice"
        paths.add(f.path)
        if not _is_count(f.size):
            return f"gives {f.path!r} a malformed size"
        if f.kind == "blob":
            if not check_object_id(f.object):
                return f"gives the file {f.path!r} a malformed object id"
            if f.tensors:
                return f"lists tensors for the plain file {f.path!r}"
        elif f.kind in ("safetensors", "chunked"):
            if not check_object_id(f.header_object):
                return f"gives {f.path!r} a malformed header object id"
            total = 0
            for t in f.tensors:
                if not isinstance(t, TensorEntry) or not check_object_id(t.object):
                    return f"has a malformed tensor entry in {f.path!r}"
                size = ITEMSIZE.get(t.dtype) if isinstance(t.dtype, str) else None
                if size is None or not _is_count(t.nbytes):
                    return f"gives tensor {t.name!r} of {f.path!r} a malformed dtype or size"
                if not (isinstance(t.shape, list) and all(_is_count(d) for d in t.shape)):
                    return f"gives tensor {t.name!r} of {f.path!r} a malformed shape"
                elements = 1
                for d in t.shape:
                    elements *= d
                if elements * size != t.nbytes:
                    return f"gives tensor {t.name!r} of {f.path!r} a size its shape denies"
                total += t.nbytes
            if total > f.size:
                return f"gives {f.path!r} tensors larger than the file"
        else:
            return f"gives {f.path!r} an unknown kind {f.kind!r}"
    sizes: dict[str, int] = {}
    for f in manifest.files:  # ids are content hashes: one id, one size
        named = [(f.object, f.size)] if f.object else []
        if f.header_object:
            named.append((f.header_object, header_size(f)))
        named += [(t.object, t.nbytes) for t in f.tensors]
        for oid, size in named:
            if sizes.setdefault(oid, size) != size:
                return f"gives object {oid} two different sizes"
    for path in paths:  # a file cannot also be a folder of another file
        parts = path.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in paths:
                return f"uses {'/'.join(parts[:i])!r} both as a file and as a folder"
    return None


def _file_dict(f: FileEntry) -> dict[str, Any]:
    return {
        "path": f.path,
        "size": f.size,
        "kind": f.kind,
        "object": f.object,
        "header_object": f.header_object,
        "tensors": [
            {
                "name": t.name,
                "dtype": t.dtype,
                "shape": list(t.shape),
                "object": t.object,
                "nbytes": t.nbytes,
                "stored": t.stored,
            }
            for t in f.tensors
        ],
    }
