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
"""

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
