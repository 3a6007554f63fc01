"""`Manifest`: what a version is made of, as JSON-serialisable dataclasses.

A manifest lists every file of a version's directory. Plain files point at one object.
A safetensors file points at the object holding its exact header bytes and lists its
tensors in data order (name, dtype, shape, object id, nbytes): the header followed by the
tensors end to end *is* the file, so checkout rebuilds it bit for bit.

Optional parts: ``derivation`` (the opaque recipe spec of a derivable version whose
tensor bytes are not stored but re-made on checkout), ``lossy`` (the error bound of a
version stored approximately) and ``sketch`` (tensor-content hashes for parent discovery).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

FORMAT = 1


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
    kind: str  # "blob" | "safetensors"
    object: str | None = None  # blob: content hash of the file
    header_object: str | None = None  # safetensors: the 8 length bytes + JSON header
    tensors: list[TensorEntry] = field(default_factory=list)


@dataclass
class Manifest:
    """A version's files, plus how to re-make or how approximate it is."""

    files: list[FileEntry]
    derivation: dict[str, Any] | None = None
    lossy: dict[str, Any] | None = None
    sketch: list[int] = field(default_factory=list)
    format: int = FORMAT

    @property
    def total_bytes(self) -> int:
        """Logical size: the sum of the file sizes."""
        return sum(f.size for f in self.files)

    @property
    def approximate(self) -> bool:
        """True when checkout gives approximate weights (stored in lossy mode)."""
        return bool(self.lossy and self.lossy.get("approximate_tensors"))

    def tensors(self) -> list[tuple[FileEntry, TensorEntry]]:
        """Every tensor with its file."""
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
        """Inverse of `to_dict`."""
        files = [
            FileEntry(
                **{k: v for k, v in f.items() if k != "tensors"},
                tensors=[TensorEntry(**t) for t in f.get("tensors", [])],
            )
            for f in doc["files"]
        ]
        rest = {k: v for k, v in doc.items() if k != "files"}
        return cls(files=files, **rest)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        """Inverse of `to_json`."""
        return cls.from_dict(json.loads(text))


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
