"""The store's I/O fast paths keep their promises: objects become visible only when
flushed, recycled decode buffers are never ones a reader still holds, and concurrent
pieces of one file all land where they belong."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from lineage.store import ObjectStore, checkout, ingest, objects
from lineage.store.backend import DecodedCache
from lineage.store.checkout import _FileWriter

from .helpers import f32, same_tree, write_safetensors


def test_objects_are_readable_at_once_but_visible_only_after_flush(tmp_path: Path) -> None:
    store = ObjectStore.open(tmp_path / "s")
    data = b"weights" * 1000
    oid = store.object_id(data)
    store.put_object(oid, objects.blob_parts(data))
    assert store.has_object(oid)
    with store.read_object(oid, len(data)) as raw:  # read from its temp file
        assert len(raw)
    final = tmp_path / "s" / store.object_key(oid)
    assert not final.exists(), "an object must not appear under its name before flush"
    store.flush()
    assert final.is_file()
    assert not any((tmp_path / "s" / "tmp").iterdir())
    # another process (a fresh store object) sees it now
    assert ObjectStore.open(tmp_path / "s").has_object(oid)


def test_cache_recycles_only_buffers_nobody_holds() -> None:
    cache = DecodedCache(capacity=4000)

    def put(name: str, value: int) -> None:
        buf = cache.take(1000)
        buf[:] = value
        cache.put(name, buf)

    put("a", 1)
    held = cache.get("a")  # a reader still uses a's bytes
    put("b", 2)
    b_address = cache.get("b").ctypes.data  # type: ignore[union-attr]
    for i, name in enumerate("cde"):
        put(name, 3 + i)  # the fifth 1000-byte item evicts "a" (held), then "b" (not)
    put("f", 9)
    assert held is not None and (held == 1).all(), "a held buffer was written over"
    recycled = cache.take(1000)
    assert recycled.ctypes.data == b_address, "an unreferenced evicted buffer is reused"
    assert cache.take(1000).ctypes.data not in (b_address, held.ctypes.data)


def test_concurrent_pieces_of_one_file_all_land(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    writer = _FileWriter(fd)
    pieces = [np.full(4096, i % 251, dtype=np.uint8) for i in range(400)]
    order = list(range(len(pieces)))
    np.random.default_rng(0).shuffle(order)

    def work(share: list[int]) -> None:
        for i in share:
            writer.write(pieces[i], i * 4096)

    threads = [threading.Thread(target=work, args=(order[k::8],)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    os.close(fd)
    assert path.read_bytes() == b"".join(p.tobytes() for p in pieces)


def test_many_tensors_check_out_exactly_with_many_workers(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    tensors = {
        f"layer.{i}.w": f32(rng.standard_normal(int(rng.integers(1, 5000)))) for i in range(300)
    }
    src = write_safetensors(tmp_path / "m" / "model.safetensors", tensors).parent
    store = ObjectStore.open(tmp_path / "s", workers=8)
    manifest = ingest(store, src)
    store.cache.clear()  # decode from the objects, not from the ingest's cache
    checkout(store, manifest, tmp_path / "out")
    assert same_tree(src, tmp_path / "out")
