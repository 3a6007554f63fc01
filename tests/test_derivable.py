"""Derivable versions: a cheap deterministic recipe's output is stored as the recipe
plus content hashes, and checkout re-makes it bit-exactly."""

from __future__ import annotations

from pathlib import Path

from lineage.testing import same_model_files


def _same_tree(a: Path, b: Path) -> None:
    assert same_model_files(a, b)
