"""A small workspace for the hostile-input tests: base@1 and ft@1 from tiny weights."""

from __future__ import annotations

import contextlib
import sqlite3
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
    """Every file below `root`, by relative path, with its bytes; a SQLite database by
    its content (an SQL dump), not its pages: when its write-ahead log is folded into
    the file, and its -wal and -shm files come and go, depends on which connections are
    open, not on what it holds."""
    out = {}
    for path in root.rglob("*"):
        if not path.is_file() or path.name.endswith(("-wal", "-shm")):
            continue
        data = path.read_bytes()
        if data.startswith(b"SQLite format 3\x00"):
            with contextlib.closing(sqlite3.connect(path)) as db:
                data = "\n".join(db.iterdump()).encode()
        out[str(path.relative_to(root))] = data
    return out
