"""A source that changes while it is added never yields an unreadable version (issue 12,
item 5): tensors are hashed and encoded from a private copy of their bytes, read with
``pread``, so what is stored always decodes to what was hashed; a file that shrinks is
one clear error, never a SIGBUS; a file that changed is refused rather than recorded as
a mix of two files."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

import lineage
from lineage.errors import WeightsError
from lineage.store import ObjectStore, ingest, verify


def _big_model(path: Path, tensors: int = 12, elements: int = 1 << 20) -> Path:
    rng = np.random.default_rng(0)
    path.mkdir(parents=True)
    save_file(
        {f"t{i}": rng.standard_normal(elements).astype(np.float32) for i in range(tensors)},
        str(path / "model.safetensors"),
    )
    return path


def test_a_source_rewritten_during_add_is_refused_or_stored_consistently(tmp_path: Path) -> None:
    model = _big_model(tmp_path / "m")
    weights = model / "model.safetensors"
    size = weights.stat().st_size
    stop = threading.Event()

    def scribble() -> None:  # another program rewriting the weights in place, again and again
        rng = np.random.default_rng(1)
        fd = os.open(weights, os.O_WRONLY)
        try:
            while not stop.is_set():
                at = int(rng.integers(1024, size - 4096))
                os.pwrite(fd, rng.bytes(4096), at)
        finally:
            os.close(fd)

    outcomes = []
    for attempt in range(3):
        store = ObjectStore.open(tmp_path / f"objects-{attempt}")
        writer = threading.Thread(target=scribble)
        writer.start()
        try:
            manifest = ingest(store, model)
        except WeightsError as exc:
            assert "changed while lineage was reading" in str(exc)
            assert not list(store.iter_manifests())
            outcomes.append("refused")
            continue
        finally:
            stop.set()
            writer.join()
            stop.clear()
        mid = store.put_manifest(manifest)
        # whatever was stored decodes to exactly what was hashed
        assert verify(ObjectStore.open(tmp_path / f"objects-{attempt}"), {"m@1": mid}).ok
        outcomes.append("stored")
    assert outcomes  # (each attempt asserted its own outcome)


_SHRINKING_ADD = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from lineage.errors import WeightsError
    from lineage.store import ObjectStore, ingest
    store = ObjectStore.open(sys.argv[1])
    weights = Path(sys.argv[2]) / "model.safetensors"
    real = store.put_object
    def put_then_shrink(oid, parts):
        real(oid, parts)
        if sum(len(p) for p in parts) > 1 << 20:  # the first tensor is stored: now shrink
            os.truncate(weights, 4096)
    store.put_object = put_then_shrink
    store.workers = 1
    try:
        ingest(store, Path(sys.argv[2]))
        print("stored")
    except WeightsError as exc:
        print("refused:", exc)
    """
)


def test_a_source_that_shrinks_during_add_is_one_clear_error(tmp_path: Path) -> None:
    model = _big_model(tmp_path / "m")
    env = {**os.environ, "PYTHONPATH": str(Path(lineage.__file__).parents[1])}
    result = subprocess.run(
        [sys.executable, "-c", _SHRINKING_ADD, str(tmp_path / "objects"), str(model)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, f"the ingest died ({result.returncode}): {result.stderr}"
    assert result.stdout.startswith("refused:"), result.stdout
    assert "shrank" in result.stdout or "changed" in result.stdout
    assert not list(ObjectStore.open(tmp_path / "objects").iter_manifests())
