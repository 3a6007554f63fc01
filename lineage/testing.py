"""Helpers for tests (ours and users'): tiny weight directories that need no model.

For a real (tiny) transformer use `lineage.bundled.make_tiny_model`.
"""

from __future__ import annotations

import filecmp
import os
import subprocess
from pathlib import Path

import numpy as np

#: Headless Chromium for the explorer's browser tests and `bench/ui.py`: Debian's package
#: unless $LINEAGE_CHROMIUM says otherwise (no browser is downloaded).
CHROMIUM = os.environ.get("LINEAGE_CHROMIUM", "/usr/bin/chromium")
#: As root Chromium needs --no-sandbox; the rest keeps a test browser from reaching out
#: (the network is closed anyway) and from doing first-run work.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def write_tiny_weights(directory: Path, seed: int = 0, *, scale: float = 1.0) -> Path:
    """A small HF-like directory: `config.json` and one `model.safetensors`.

    >>> sorted(p.name for p in write_tiny_weights(tmp / "w", seed=1).iterdir())
    ['config.json', 'model.safetensors']
    """
    from safetensors.numpy import save_file

    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tensors = {
        "embeddings.weight": (rng.standard_normal((64, 16)) * scale).astype(np.float32),
        "layer.0.weight": (rng.standard_normal((16, 16)) * scale).astype(np.float32),
        "layer.0.bias": np.zeros(16, dtype=np.float32),
    }
    save_file(tensors, str(directory / "model.safetensors"))
    (directory / "config.json").write_text('{"model_type": "tiny", "hidden_size": 16}\n')
    return directory


def in_ci() -> bool:
    """True under CI (`CI=true`), where a missing service is a failure, not a skip."""
    import os

    return os.environ.get("CI", "").lower() == "true"


def require_service(available: bool, reason: str) -> None:
    """Skip a test when a service is missing on a laptop; under CI=true, fail it."""
    if available:
        return
    import pytest

    if in_ci():
        pytest.fail(f"CI=true but a required service is missing: {reason}")
    pytest.skip(reason)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def weights_unchanged_fraction(
    model_dir: Path, parent_dir: Path | None, data: object = None, params: object = None
) -> float:
    """A user test (`module:function`): the share of weights equal to the parent's.

    Declared with `--kind user --param ref=lineage.testing:weights_unchanged_fraction`;
    a fine-tune scores near 0, a dtype cast near 0, a copy 1.0.
    """
    from safetensors.numpy import load_file

    if parent_dir is None:
        return 1.0
    mine = load_file(str(model_dir / "model.safetensors"))
    theirs = load_file(str(parent_dir / "model.safetensors"))
    same = total = 0
    for name, values in mine.items():
        other = theirs.get(name)
        total += values.size
        if other is not None and other.shape == values.shape and other.dtype == values.dtype:
            same += int((values == other).sum())
    return same / total if total else 1.0


def run_cli(
    args: list[str],
    cwd: Path,
    *,
    check: bool = True,
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run `lineage ARGS` as a real process in `cwd` (the workspace found from there, not
    from $LINEAGE_WORKSPACE); with `check`, fail with its stderr on a non-zero exit."""
    import os
    import sys

    full_env = {**os.environ, "LINEAGE_AUTHOR": "tester", **(env or {})}
    full_env.pop("LINEAGE_WORKSPACE", None)
    result = subprocess.run(
        [sys.executable, "-m", "lineage.cli.main", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"lineage {args} failed ({result.returncode}): {result.stderr}")
    return result


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single `error: ...` line a failed command printed (asserts there is one)."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def same_model_files(a: Path, b: Path) -> bool:
    """Whether two model folders hold the same files with the same bytes (a lineage
    checkout's own marker file aside): what "a bit-exact checkout" means."""
    from lineage.formats import CHECKOUT_MARKER

    def files(root: Path) -> list[Path]:
        return sorted(
            p.relative_to(root)
            for p in root.rglob("*")
            if p.is_file() and p.name != CHECKOUT_MARKER
        )

    names = files(a)  # compared in small buffers: shards of many GB need not fit in memory
    return names == files(b) and all(filecmp.cmp(a / p, b / p, shallow=False) for p in names)
