"""Helpers for the hostile-input and fault tests: real `lineage` processes, model folders."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

LINEAGE = [sys.executable, "-m", "lineage.cli.main"]


def cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run one `lineage` command (never raises; the caller checks the exit code)."""
    env = {**os.environ, "LINEAGE_AUTHOR": "tester"}
    env.pop("LINEAGE_WORKSPACE", None)
    return subprocess.run(
        [*LINEAGE, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=300
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single `error:` line a failed command printed (asserts there is exactly one
    non-empty stderr line and no traceback)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1, result.stderr
    return lines[0]


def model_dir(path: Path, seed: int = 0, tensors: int = 3, size: int = 2048) -> Path:
    """A small model folder: `config.json` and one `model.safetensors` of float32."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    save_file(
        {f"layer.{i}.weight": rng.standard_normal(size).astype(np.float32) for i in range(tensors)},
        str(path / "model.safetensors"),
    )
    (path / "config.json").write_text('{"model_type": "tiny"}\n')
    return path


def init_workspace(root: Path) -> Path:
    result = cli(["init", str(root), "--no-tracking"], root.parent)
    assert result.returncode == 0, result.stderr
    return root


def flip_byte(path: Path, offset: int = -5) -> None:
    """Flip one bit of a file in place (a damaged disk block)."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 1
    path.write_bytes(bytes(data))
