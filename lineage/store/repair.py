"""`repair`: rewrite damaged objects from good bytes found elsewhere, then say what is left.

Objects are named by the hash of their decoded bytes, so good bytes are recognised
wherever they are: in a folder of model files (the original weights, a checkout of
another version that shares tensors) or in another object store (a backup, a
colleague's workspace). `repair`:

1. verifies the given versions and collects every object they cannot read: missing or
   corrupt ones, and the delta bases below them;
2. hashes what the sources hold (each tensor of each safetensors file, each header,
   each side file or piece of one) and, for every damaged object it finds, writes a
   fresh plain object from those bytes (no delta: nothing it depends on can be broken);
   from another store it copies verified bytes, and damaged manifests too;
3. verifies again and reports what was repaired and what stays unrepairable.

Example (`lineage store verify --repair --from DIR`):
    >>> report = repair(ws.store, {"base@1": ws.resolve("base@1").manifest_id}, [])
    >>> report.ok, report.unrepairable
    (True, [])
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lineage.errors import LineageError, WeightsError
from lineage.store import codec, objects
from lineage.store.backend import ObjectStore
from lineage.store.checkout import hash_range
from lineage.store.dtypes import ITEMSIZE, uint_type
from lineage.store.ingest import SIDE_FILE_PIECE
from lineage.store.reader import base_nbytes, read_bytes
from lineage.store.safetensors_format import read_layout
from lineage.store.sources import OpenSource, SourceFile, scan_source
from lineage.store.verify import VerifyReport, verify

log = logging.getLogger(__name__)


@dataclass
class RepairReport:
    """What `repair` found, fixed and could not fix."""

    damaged_objects: list[str] = field(default_factory=list)
    repaired_objects: list[str] = field(default_factory=list)
    damaged_manifests: list[str] = field(default_factory=list)
    repaired_manifests: list[str] = field(default_factory=list)
    #: the final verify's problems, one line each ("" when everything reads again)
    unrepairable: list[str] = field(default_factory=list)
    after: VerifyReport | None = None

    @property
    def ok(self) -> bool:
        """Every version reads again."""
        return not self.unrepairable

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        out = asdict(self)
        out["after"] = None if self.after is None else self.after.to_dict()
        out["ok"] = self.ok
        return out


@dataclass
class _Wanted:
    """A damaged object: its decoded size and, for a tensor, its dtype."""

    nbytes: int
    dtype: str | None  # None: a blob (file, safetensors header or side-file piece)


def open_repair_source(text: str, **options: Any) -> Path | ObjectStore:
    """A ``--from`` argument as a repair source: an object store (an ``s3://`` URL, a
    store folder, or a workspace, whose store is used), else a folder of model files."""
    if text.startswith("s3://"):
        return ObjectStore.open(text, **options)
    path = Path(text)
    for root in (path, path / ".lineage" / "objects"):
        if (root / "store.json").is_file() or (
            (root / "objects").is_dir() and (root / "manifests").is_dir()
        ):
            return ObjectStore.open(root, **options)
    if not path.exists():
        raise WeightsError(f"no such file or directory: {path}")
    return path


def repair(
    store: ObjectStore,
    manifests_by_label: dict[str, str],
    sources: Sequence[Path | ObjectStore],
) -> RepairReport:
    """Rewrite the damaged objects of the given versions (label -> manifest id) from
    good bytes found in `sources`; see the module docstring."""
    report = RepairReport()
    before = verify(store, manifests_by_label)
    wanted = _damaged(store, before)
    report.damaged_objects = sorted(wanted)
    broken_manifests = {
        check.manifest_id for check in before.versions.values() if check.manifest_error
    }
    report.damaged_manifests = sorted(broken_manifests)
    with store.lock(exclusive=False):
        for source in sources:
            if not wanted and not broken_manifests:
                break
            if isinstance(source, ObjectStore):
                fixed = _from_store(store, source, wanted)
                for mid in sorted(broken_manifests):
                    try:
                        store.put_manifest_bytes(mid, source.get_manifest_bytes(mid))
                    except LineageError as exc:
                        log.info("manifest %s not repaired from %s: %s", mid, source.location, exc)
                        continue
                    broken_manifests.discard(mid)
                    report.repaired_manifests.append(mid)
            else:
                fixed = _from_folder(store, Path(source), wanted)
            report.repaired_objects += fixed
            for oid in fixed:
                del wanted[oid]
        store.flush()
    report.repaired_objects.sort()
    store.cache.clear()
    report.after = verify(store, manifests_by_label)
    report.unrepairable = report.after.problems()
    return report


def _damaged(store: ObjectStore, found: VerifyReport) -> dict[str, _Wanted]:
    """Every object the failing versions cannot read, with the delta bases below them."""
    sizes: dict[str, _Wanted] = {}
    for check in found.versions.values():
        failing = set(check.missing) | {c["object"] for c in check.corrupt}
        if not failing:
            continue
        manifest = store.get_manifest(check.manifest_id)
        dtypes = {t.object: t.dtype for _, t in manifest.tensors()}
        for oid, nbytes in manifest.object_sizes().items():
            if oid in failing:
                sizes[oid] = _Wanted(nbytes, dtypes.get(oid))
    stack = list(sizes.items())
    while stack:  # the chains below: a base may be what is damaged
        oid, wanted = stack.pop()
        if wanted.dtype is None:
            continue  # a blob has no base
        try:
            header = store.object_header(oid)
            base = header.get("base")
            base_dtype = header.get("base_dtype", header.get("dtype"))
            if not base or base in sizes or base_dtype not in ITEMSIZE:
                continue
            entry = _Wanted(base_nbytes(header, wanted.nbytes), str(base_dtype))
        except (LineageError, KeyError, TypeError, ValueError):
            continue  # a missing or garbled object: its chain is unknown
        sizes[base] = entry
        stack.append((base, entry))
    return sizes


def _from_store(store: ObjectStore, other: ObjectStore, wanted: dict[str, _Wanted]) -> list[str]:
    fixed = []
    for oid, info in sorted(wanted.items()):
        if not other.has_object(oid):
            continue
        try:
            data = read_bytes(other, oid, info.nbytes)  # verified against the id
        except LineageError as exc:
            log.info("object %s is damaged in %s too: %s", oid, other.location, exc)
            continue
        _write(store, oid, info, data)
        fixed.append(oid)
    return fixed


def _from_folder(store: ObjectStore, folder: Path, wanted: dict[str, _Wanted]) -> list[str]:
    """Hash every piece of every file under `folder`; rewrite the wanted ones."""
    fixed: list[str] = []
    for file in scan_source(folder):
        if not wanted:
            break
        try:
            with OpenSource(file) as f:
                for offset, length in _pieces(f, file):
                    oid = hash_range(store, f, offset, length)
                    info = wanted.get(oid)
                    if info is None or info.nbytes != length or oid in fixed:
                        continue
                    data = np.frombuffer(f.read(offset, length), np.uint8)
                    if store.object_id(data) != oid:  # the file changed under us
                        continue
                    _write(store, oid, info, data)
                    fixed.append(oid)
        except WeightsError as exc:  # one unreadable file does not stop the search
            log.info("skipping %s: %s", file.path, exc)
    return fixed


def _pieces(f: OpenSource, file: SourceFile) -> list[tuple[int, int]]:
    """(offset, length) of every range of a file that may be an object on its own."""
    if file.rel.endswith(".safetensors"):
        layout = read_layout(f)
        return [(0, layout.data_start)] + [
            (layout.data_start + s.begin, s.nbytes) for s in layout.tensors
        ]
    if file.size <= SIDE_FILE_PIECE:
        return [(0, file.size)]
    return [
        (start, min(SIDE_FILE_PIECE, file.size - start))
        for start in range(0, file.size, SIDE_FILE_PIECE)
    ]


def _write(store: ObjectStore, oid: str, info: _Wanted, data: np.ndarray) -> None:
    """Write good bytes as a fresh, self-contained object under their id."""
    if info.dtype is None:
        parts = objects.blob_parts(data.data)
    else:
        bits = data.view(uint_type(ITEMSIZE[info.dtype]))
        chunks, coded = codec.encode_lossless("plain", bits, None)
        header = objects.tensor_header(info.dtype, data.nbytes, "plain", chunks)
        parts = objects.pack(header, coded)
    store.forget(oid)  # what this process remembers of the damaged one
    store.put_object(oid, parts)
    log.info("repaired object %s", oid)
