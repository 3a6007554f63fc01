"""A write that fails half-way (the disk is full) leaves nothing visible and nothing
corrupt, and the next `add` works.

The failure is real, not mocked: `lineage add` runs with a file-size limit
(RLIMIT_FSIZE, SIGXFSZ ignored), so the kernel refuses the write of the first large
object exactly as it refuses a write to a full disk, with an OSError mid-file.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

from .helpers import f32, same_tree, write_safetensors

LINEAGE = [sys.executable, "-m", "lineage.cli.main"]
LIMIT = 1 << 20  # bytes any one file may grow to in the limited process


def _lineage(args: list[str], cwd: Path, limit: int | None = None) -> subprocess.CompletedProcess:
    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = {**os.environ, "LINEAGE_AUTHOR": "tester", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("LINEAGE_WORKSPACE", None)
    return subprocess.run(
        [*LINEAGE, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        preexec_fn=limit_file_size if limit else None,
    )


def _model(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    tensors = {
        "big": f32(rng.standard_normal(3 * LIMIT // 4)),  # 3 MB: its object cannot be written
        "small": f32(rng.standard_normal(64)),
    }
    return write_safetensors(path / "model.safetensors", tensors).parent


def test_add_on_a_full_disk_fails_cleanly_and_the_next_add_works(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    assert _lineage(["init", str(root), "--no-tracking"], tmp_path).returncode == 0
    base = _model(tmp_path / "base", seed=0)
    assert _lineage(["add", "base", "--from", str(base)], root).returncode == 0
    objects_before = sorted((root / ".lineage" / "objects" / "objects").rglob("*"))

    child = _model(tmp_path / "child", seed=1)
    failed = _lineage(["add", "child", "--from", str(child), "-p", "base@1"], root, LIMIT)
    assert failed.returncode == 8, failed.stderr
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), failed.stderr
    assert "cannot write" in lines[0] and "File too large" in lines[0]

    # nothing visible: no version, no new object under its final name, the store sound
    assert _lineage(["show", "child"], root).returncode != 0
    assert sorted((root / ".lineage" / "objects" / "objects").rglob("*")) == objects_before
    verify = _lineage(["store", "verify", "--json"], root)
    assert verify.returncode == 0, verify.stderr
    assert json.loads(verify.stdout)["ok"] is True

    # the next add (with space again) works, and its checkout is exact
    assert _lineage(["add", "child", "--from", str(child), "-p", "base@1"], root).returncode == 0
    out = tmp_path / "out"
    assert _lineage(["checkout", "child@1", str(out)], root).returncode == 0
    assert same_tree(child, out)
