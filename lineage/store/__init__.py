"""lineage's object store: content-addressed tensors and files, delta-compressed.

Public interface (see each module's docstring)::

    store = ObjectStore.open(".lineage/objects")        # or "s3://bucket/prefix"
    bases = delta_bases(store, Path("model_dir"), previous=mid, parents=[...], others={...})
    manifest = ingest(store, Path("model_dir"), parents=bases)
    manifest_id = store.put_manifest(manifest)            # durable; the commit point
    checkout(store, store.get_manifest(manifest_id), Path("out"))
    verify(store, {"bert@3": manifest_id}); gc(store, {manifest_id}); stats(store, {...})
    repair(store, {"bert@3": manifest_id}, [Path("bert-weights/"), other_store])
    diff_manifests(store, a, b); find_similar(store, Path("dir"), {"bert@3": manifest_id})

The names load on first use: reading a manifest (`lineage show`) must not pay for
the codec's imports (numpy, the C kernels). Six public functions share their name
with the submodule that defines them (checkout, gc, ingest, repair, stats, verify);
the package attribute is always the function, even when the submodule was imported
first (see `_StorePackage`).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lineage.store.backend import ObjectStore
    from lineage.store.bases import delta_bases
    from lineage.store.checkout import checkout
    from lineage.store.diff import DiffReport, diff_manifests
    from lineage.store.gc import GcReport, gc
    from lineage.store.ingest import LossyOptions, ingest
    from lineage.store.manifest import FileEntry, Manifest, TensorEntry
    from lineage.store.repair import RepairReport, repair
    from lineage.store.similar import find_similar
    from lineage.store.stats import StatsReport, stats
    from lineage.store.verify import VerifyReport, verify

#: public name -> the submodule that defines it
_HOMES = {
    "ObjectStore": "backend",
    "delta_bases": "bases",
    "checkout": "checkout",
    "DiffReport": "diff",
    "diff_manifests": "diff",
    "GcReport": "gc",
    "gc": "gc",
    "LossyOptions": "ingest",
    "ingest": "ingest",
    "FileEntry": "manifest",
    "Manifest": "manifest",
    "TensorEntry": "manifest",
    "RepairReport": "repair",
    "repair": "repair",
    "find_similar": "similar",
    "StatsReport": "stats",
    "stats": "stats",
    "VerifyReport": "verify",
    "verify": "verify",
}

__all__ = [
    "DiffReport",
    "FileEntry",
    "GcReport",
    "LossyOptions",
    "Manifest",
    "ObjectStore",
    "RepairReport",
    "StatsReport",
    "TensorEntry",
    "VerifyReport",
    "checkout",
    "delta_bases",
    "diff_manifests",
    "find_similar",
    "gc",
    "ingest",
    "repair",
    "stats",
    "verify",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


class _StorePackage(types.ModuleType):
    """The import system binds a loaded submodule as an attribute of its package;
    where the submodule is named like a public function, bind the function instead."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _HOMES.get(name) == name:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _StorePackage
