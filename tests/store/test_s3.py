"""The S3 backend against a real SeaweedFS server (see the `s3_endpoint` fixture)."""

from __future__ import annotations

import time
from pathlib import Path

from lineage.errors import CorruptObjectError
from lineage.store import ObjectStore, checkout, gc, ingest, stats, verify

from .helpers import same_tree


def _open(endpoint: str, tmp_path: Path, prefix: str) -> ObjectStore:
    return ObjectStore.open(
        f"s3://lineage-test/{prefix}",
        endpoint_url=endpoint,
        aws_access_key_id="any",
        aws_secret_access_key="any",
    )


def test_s3_roundtrip_verify_stats_gc(s3_endpoint: str, tiny_bert: Path, tmp_path: Path):
    store = _open(s3_endpoint, tmp_path, f"run-{time.time_ns()}")
    m = ingest(store, tiny_bert)
    mid = store.put_manifest(m)
    fresh = _open(s3_endpoint, tmp_path, store.location.rsplit("/", 1)[-1])
    checkout(fresh, fresh.get_manifest(mid), tmp_path / "out")
    assert same_tree(tiny_bert, tmp_path / "out")
    assert verify(fresh, {"t@1": mid}).ok
    assert stats(fresh, {"t@1": mid}).stored_bytes > 0
    report = gc(fresh, {mid}, grace_seconds=0)
    assert not report.removed_objects
    # corrupt one object in the bucket: verify and checkout name it
    victim = max(m.tensors(), key=lambda ft: ft[1].nbytes)[1].object
    key = fresh._key(fresh.object_key(victim))  # type: ignore[attr-defined]
    body = bytearray(fresh.client.get_object(Bucket="lineage-test", Key=key)["Body"].read())  # type: ignore[attr-defined]
    body[-5] ^= 1
    fresh.client.put_object(Bucket="lineage-test", Key=key, Body=bytes(body))  # type: ignore[attr-defined]
    fresh.cache.clear()
    assert verify(fresh, {"t@1": mid}).versions["t@1"].corrupt[0]["object"] == victim
    try:
        checkout(fresh, m, tmp_path / "bad", label="t@1")
        raise AssertionError("corruption not detected")
    except CorruptObjectError as exc:
        assert victim in str(exc) and "t@1" in str(exc)
    assert gc(fresh, set(), grace_seconds=0).removed_objects
    assert not list(fresh.iter_objects())
