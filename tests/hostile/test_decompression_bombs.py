"""Objects that claim to decode to gigabytes are refused before anything that size is
allocated (issue 12, item 4). zstandard sizes its output from a frame's own declared
content size and ignores `max_output_size` when there is one, so every declared size is
checked against what the manifest says first; a garbled header is one store error."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import zstandard
from cli_helpers import cli, init_workspace, model_dir, one_error_line

import lineage
from lineage.errors import CorruptObjectError
from lineage.store import ObjectStore, checkout, ingest, verify
from lineage.store.planes import _decompress

GIB = 1 << 30


def _bomb_frame(size: int = GIB) -> bytes:
    """A real zstd frame of `size` zero bytes that declares its size (~40 kB)."""
    out = io.BytesIO()
    with zstandard.ZstdCompressor(level=3).stream_writer(out, size=size, closefd=False) as w:
        block = bytes(1 << 20)
        for _ in range(size // len(block)):
            w.write(block)
    return out.getvalue()


def _object_file(header: dict, payload: bytes) -> bytes:
    head = json.dumps(header).encode()
    return struct.pack("<4sI", b"LNO1", len(head)) + head + payload


def _replace_object(store_root: Path, oid: str, data: bytes) -> None:
    path = store_root / "objects" / oid[:2] / oid
    path.chmod(0o644)
    path.write_bytes(data)


def test_a_plane_declaring_more_than_its_chunk_is_refused_before_decompressing() -> None:
    frame = zstandard.ZstdCompressor().compress(bytes(64 << 20))  # declares 64 MiB
    with pytest.raises(ValueError, match="declares"):
        _decompress(memoryview(frame), 4096)


_CHECKOUT = textwrap.dedent(
    """
    import resource, sys
    from pathlib import Path
    from lineage.errors import StoreError
    from lineage.store import ObjectStore, checkout
    store = ObjectStore.open(sys.argv[1])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        checkout(store, store.get_manifest(sys.argv[2]), Path(sys.argv[3]), label="m@1")
        print("no error")
    except StoreError as exc:
        print("error:", exc)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    print("grown_kib", grown)
    """
)


def test_a_blob_bomb_is_refused_without_allocating_it(tmp_path: Path) -> None:
    root = tmp_path / "objects"
    store = ObjectStore.open(root)
    manifest = ingest(store, model_dir(tmp_path / "m"))
    mid = store.put_manifest(manifest)
    config = next(f for f in manifest.files if f.path == "config.json")
    assert config.object is not None
    bomb = _object_file({"kind": "blob", "codec": "zstd", "n": GIB}, _bomb_frame())
    assert len(bomb) < 100_000
    _replace_object(root, config.object, bomb)
    env = {**os.environ, "PYTHONPATH": str(Path(lineage.__file__).parents[1])}
    result = subprocess.run(
        [sys.executable, "-c", _CHECKOUT, str(root), mid, str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert config.object in lines["error:"] and "m@1" in lines["error:"]
    assert int(lines["grown_kib"]) < 200 * 1024, "the bomb was decompressed"
    assert not (tmp_path / "out" / "config.json").exists()


def test_a_huge_header_count_is_one_store_error_and_verify_goes_on(tmp_path: Path) -> None:
    root = init_workspace(tmp_path / "ws")
    for name, seed in (("a", 0), ("b", 1)):
        model = model_dir(tmp_path / name, seed=seed)
        assert cli(["add", name, "--from", str(model)], root).returncode == 0
    store_root = root / ".lineage" / "objects"
    store = ObjectStore.open(store_root)
    manifests = json.loads(cli(["show", "a@1", "--json"], root).stdout)
    manifest = store.get_manifest(manifests["manifest_id"])
    victim = manifest.files[1].tensors[0]
    header = {
        "kind": "tensor",
        "dtype": "F32",
        "n": 10**15,
        "enc": "plain",
        "depth": 0,
        "chunks": [[250 * 10**12, [[1, 1], [1, 1], [1, 1], [1, 1]]]],
    }
    _replace_object(store_root, victim.object, _object_file(header, b"\0" * 4))
    result = cli(["checkout", "a@1", str(tmp_path / "out")], root)
    assert result.returncode == 8
    line = one_error_line(result)
    assert victim.object in line and "a@1" in line
    result = cli(["store", "verify", "--json"], root)
    assert result.returncode == 8 and "Traceback" not in result.stderr
    report = json.loads(result.stdout)
    assert report["versions"]["b@1"]["ok"] is True
    assert report["versions"]["a@1"]["corrupt"][0]["object"] == victim.object
    assert cli(["checkout", "b@1", str(tmp_path / "out-b")], root).returncode == 0


def test_verify_reports_a_truncated_and_a_garbled_object_and_goes_on(tmp_path: Path) -> None:
    root = tmp_path / "objects"
    store = ObjectStore.open(root)
    ids = {}
    for seed in range(3):
        ids[f"m{seed}@1"] = store.put_manifest(
            ingest(store, model_dir(tmp_path / f"m{seed}", seed=seed))
        )
    first = store.get_manifest(ids["m0@1"]).files[1].tensors[0].object
    second = store.get_manifest(ids["m1@1"]).files[1].tensors[0].object
    path = root / "objects" / first[:2] / first
    path.write_bytes(path.read_bytes()[:20])  # truncated inside its header
    _replace_object(root, second, b"LNO1\xff\xff\xff\xff" + b"x" * 100)  # absurd header length
    store.cache.clear()
    report = verify(ObjectStore.open(root), ids)
    assert report.versions["m2@1"].ok
    assert report.versions["m0@1"].corrupt[0]["object"] == first
    assert report.versions["m1@1"].corrupt[0]["object"] == second
    with pytest.raises(CorruptObjectError, match=second):
        checkout(ObjectStore.open(root), store.get_manifest(ids["m1@1"]), tmp_path / "out")
