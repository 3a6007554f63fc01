"""The S3 backend against a real SeaweedFS server (see the `s3_endpoint` fixture)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import lineage
from lineage.errors import CorruptObjectError
from lineage.store import ObjectStore, checkout, gc, ingest, stats, verify
from lineage.store.s3 import _spans

from .helpers import base_and_fine_tune, same_tree


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


def test_a_fine_tune_is_delta_coded_from_ranged_reads_of_its_base(
    s3_endpoint: str, tmp_path: Path
) -> None:
    base, tuned = base_and_fine_tune(tmp_path, layers=3, seed=0)
    store = _open(s3_endpoint, tmp_path, f"delta-{time.time_ns()}")
    parent = ingest(store, base)
    ids = {"base": store.put_manifest(parent)}
    fresh = _open(s3_endpoint, tmp_path, store.location.rsplit("/", 1)[-1])
    gets = []
    real_get = fresh.client.get_object  # type: ignore[attr-defined]
    fresh.client.get_object = lambda **kw: gets.append(kw) or real_get(**kw)  # type: ignore[attr-defined]
    ids["tuned"] = fresh.put_manifest(ingest(fresh, tuned, parents=[parent]))
    assert stats(fresh, ids).versions["tuned"].encodings == {"gsub": 3}
    ranged = [g for g in gets if "Range" in g]
    assert ranged and len(ranged) <= 3 * 4  # header, windows, whole: not a GET per plane
    other = _open(s3_endpoint, tmp_path, store.location.rsplit("/", 1)[-1])
    checkout(other, other.get_manifest(ids["tuned"]), tmp_path / "out")
    assert same_tree(tuned, tmp_path / "out")


def test_close_ranges_share_one_request() -> None:
    spans = list(_spans([(1000, 10), (0, 100), (50, 100), (900_000, 5)], gap=4096))
    assert spans == [
        (0, 1010, [(0, 100), (50, 100), (1000, 10)]),
        (900_000, 900_005, [(900_000, 5)]),
    ]


_HOLD = textwrap.dedent(
    """
    import sys, time
    from lineage.store import ObjectStore
    store = ObjectStore.open(
        sys.argv[1], endpoint_url=sys.argv[2], aws_access_key_id="any",
        aws_secret_access_key="any", lease_seconds=float(sys.argv[4]),
    )
    with store.lock(exclusive=sys.argv[3] == "exclusive"):
        print("held", time.time(), flush=True)
        time.sleep(float(sys.argv[5]))
    print("released", time.time(), flush=True)
    """
)


def _holder(
    tmp_path: Path, endpoint: str, url: str, kind: str, lease: float, hold: float
) -> subprocess.Popen[str]:
    """Another host (issue 12, item 8): its own process and its own temp folder, where
    the lock used to live, so only a lock kept in the bucket makes them wait."""
    other_tmp = tmp_path / f"host-{kind}-{time.monotonic_ns()}"
    other_tmp.mkdir()
    env = {
        **os.environ,
        "TMPDIR": str(other_tmp),
        "PYTHONPATH": str(Path(lineage.__file__).parents[1]),
    }
    args = [sys.executable, "-c", _HOLD, url, endpoint, kind, str(lease), str(hold)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env)


def _wait_for(proc: subprocess.Popen[str], word: str) -> float:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(word):
            return float(line.split()[1])
    raise AssertionError(f"the holder exited ({proc.wait()}) without printing {word!r}")


def test_s3_lock_excludes_across_hosts(s3_endpoint: str, tmp_path: Path) -> None:
    url = f"s3://lineage-test/lock-{time.time_ns()}"
    gc_host = _holder(tmp_path, s3_endpoint, url, "exclusive", 20, 3)
    _wait_for(gc_host, "held")
    ingest_host = _holder(tmp_path, s3_endpoint, url, "shared", 20, 0)
    released = _wait_for(gc_host, "released")
    acquired = _wait_for(ingest_host, "held")
    assert acquired >= released - 0.05, "the ingest ran while another host's gc held the lock"
    assert gc_host.wait() == 0 and ingest_host.wait() == 0


def test_s3_lease_of_a_killed_holder_expires(s3_endpoint: str, tmp_path: Path) -> None:
    url = f"s3://lineage-test/lease-{time.time_ns()}"
    dead = _holder(tmp_path, s3_endpoint, url, "exclusive", 4, 600)
    _wait_for(dead, "held")
    dead.kill()  # never releases: its lease must run out
    dead.wait()
    start = time.time()
    waiter = _holder(tmp_path, s3_endpoint, url, "shared", 4, 0)
    acquired = _wait_for(waiter, "held")
    assert 1.0 <= acquired - start < 20
    assert waiter.wait() == 0
