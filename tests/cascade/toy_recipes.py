"""Fast, deterministic user recipes (`toy_recipes:NAME`) for the cascade tests.

They are imported by reference, as any user recipe: the tests put this folder on
`sys.path` (and on `PYTHONPATH` for the processes they start).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file


def _write_scaled(parents: list[Path], out_dir: Path, factor: float) -> None:
    # Average the parents (a merge when there are several), then scale: a cheap,
    # deterministic transform whose output depends on every parent.
    tensors: dict[str, np.ndarray] = {}
    for parent in parents:
        for name, value in load_file(str(parent / "model.safetensors")).items():
            tensors[name] = tensors.get(name, 0) + value / len(parents)
    save_file(
        {k: (v * factor).astype(np.float32) for k, v in tensors.items()},
        str(out_dir / "model.safetensors"),
    )
    shutil.copy(parents[0] / "config.json", out_dir / "config.json")


def scale(parents: list[Path], params: Any, data: Any, out_dir: Path) -> dict[str, float]:
    """Average the parents and multiply by `params.factor` (default 0.5)."""
    _write_scaled(parents, out_dir, float(getattr(params, "factor", 0.5)))
    return {"factor": float(getattr(params, "factor", 0.5))}


scale.min_parents = 1  # type: ignore[attr-defined]
scale.max_parents = None  # type: ignore[attr-defined]
scale.deterministic = True  # type: ignore[attr-defined]


def explode(parents: list[Path], params: Any, data: Any, out_dir: Path) -> None:
    """Always fails: the deliberately broken descendant."""
    raise ValueError("toy recipe exploded on purpose")


def hang_while(parents: list[Path], params: Any, data: Any, out_dir: Path) -> dict[str, float]:
    """Like `scale`, but first waits while the file `params.flag` exists (at most 120 s),
    so a test can kill the cascade while this node runs."""
    flag = Path(str(getattr(params, "flag", "")))
    deadline = time.monotonic() + 120
    while flag.name and flag.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    _write_scaled(parents, out_dir, 0.25)
    return {"factor": 0.25, "pid": float(os.getpid())}
