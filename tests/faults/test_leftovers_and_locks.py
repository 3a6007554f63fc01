"""Leftovers of killed writers are reported and cleaned (issue 12, item 7), and a
local store's ingest/gc lock lives in a private folder (item 8; the S3 lock, which holds
across hosts, is tested against a real S3 server in tests/store/test_s3.py)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import LINEAGE, cli, init_workspace
from safetensors.numpy import save_file

from lineage.errors import StoreError
from lineage.store import ObjectStore, gc, stats


def _model(path: Path, megabytes: int) -> Path:
    rng = np.random.default_rng(0)
    path.mkdir(parents=True)
    count = megabytes // 4
    tensors = {f"t{i}": rng.standard_normal(1 << 20).astype(np.float32) for i in range(count)}
    save_file(tensors, str(path / "model.safetensors"))
    return path


def test_temp_files_of_a_killed_add_are_reported_and_collected(tmp_path: Path) -> None:
    root = init_workspace(tmp_path / "ws")
    model = _model(tmp_path / "m", 96)
    tmp_dir = root / ".lineage" / "objects" / "tmp"
    env = {**os.environ, "LINEAGE_AUTHOR": "tester"}
    proc = subprocess.Popen([*LINEAGE, "add", "m", "--from", str(model)], cwd=root, env=env)
    deadline = time.monotonic() + 60

    def written() -> bool:
        return tmp_dir.is_dir() and any(tmp_dir.iterdir())

    while not written() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)  # killed mid-write: its objects were never renamed in
    proc.wait()
    leftovers = list(tmp_dir.iterdir())
    assert leftovers, "the add finished before it could be killed"
    report = json.loads(cli(["store", "stats", "--json"], root).stdout)
    assert report["temp_files"] == len(leftovers) and report["temp_bytes"] > 0
    young = json.loads(cli(["store", "gc", "--json"], root).stdout)
    assert young["temp_files"] == len(leftovers) and not young["removed_temp_files"]
    old = time.time() - 7200
    for path in leftovers[1:]:
        os.utime(path, (old, old))
    swept = json.loads(cli(["store", "gc", "--json"], root).stdout)
    assert len(swept["removed_temp_files"]) == len(leftovers) - 1
    assert [p.name for p in tmp_dir.iterdir()] == [leftovers[0].name]  # the young one stays
    assert cli(["add", "m", "--from", str(model)], root).returncode == 0


def test_local_lock_folder_is_private_and_not_a_link(tmp_path: Path) -> None:
    store = ObjectStore.open(tmp_path / "a")
    mode = stat.S_IMODE((tmp_path / "a" / "locks").stat().st_mode)
    assert mode == 0o700
    with store.lock(exclusive=True):
        pass
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "locks").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(StoreError, match="link"):
        ObjectStore.open(tmp_path / "b")


def test_stats_and_gc_report_leftovers_in_the_store_api(tmp_path: Path) -> None:
    store = ObjectStore.open(tmp_path / "s")
    (tmp_path / "s" / "tmp" / "a.part").write_bytes(b"x" * 10)
    assert stats(store, {}).temp_files == 1
    dry = gc(store, set(), dry_run=True, grace_seconds=0)
    assert dry.removed_temp_files == ["tmp/a.part"] and (tmp_path / "s" / "tmp" / "a.part").exists()
    assert gc(store, set(), grace_seconds=0).removed_temp_bytes == 10
    assert not (tmp_path / "s" / "tmp" / "a.part").exists()
