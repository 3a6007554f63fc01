"""A small workspace for the hostile-input tests: base@1 and ft@1 from tiny weights."""

from __future__ import annotations

from pathlib import Path

import pytest

from lineage.ops.add import add
from lineage.testing import write_tiny_weights
from lineage.workspace import Workspace


@pytest.fixture
def small_ws(tmp_path: Path) -> Workspace:
    ws = Workspace.init(tmp_path / "ws")
    add(ws, "base", source=write_tiny_weights(tmp_path / "w-base", 0))
    add(ws, "ft", source=write_tiny_weights(tmp_path / "w-ft", 1), parents=["base@1"])
    return ws


def files_under(root: Path) -> dict[str, bytes]:
    """Every file below `root`, by relative path, with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}
