"""Text-classification data sets: shipped ones, users' files, and their fingerprints.

>>> from lineage.datasets import load_dataset
>>> ds = load_dataset("topic")                 # shipped, by name
>>> ds.summary()["sizes"]["train"] > 500
True

`load_dataset` also takes a path to a CSV/JSONL file or an existing `TextDataset`,
so recipes and model tests accept any of the three.
"""

from __future__ import annotations

from pathlib import Path

from lineage.datasets.base import SPLITS, Example, TextDataset
from lineage.datasets.files import load_file
from lineage.datasets.shipped import list_shipped, shipped_dataset
from lineage.errors import DataError

DataSpec = TextDataset | str | Path

__all__ = [
    "SPLITS",
    "DataSpec",
    "Example",
    "TextDataset",
    "list_shipped",
    "load_dataset",
    "load_file",
    "shipped_dataset",
]


def load_dataset(spec: DataSpec) -> TextDataset:
    """Resolve a data set from a `TextDataset`, a shipped name, or a file path.

    A string names a shipped data set if one has that name, else it is a path.
    `shipped:NAME` and `file:PATH` force one reading.
    """
    if isinstance(spec, TextDataset):
        return spec
    if isinstance(spec, Path):
        return load_file(spec)
    if not isinstance(spec, str) or not spec:
        raise DataError(f"not a data set: {spec!r} (give a shipped name or a CSV/JSONL path)")
    if spec.startswith("shipped:"):
        return shipped_dataset(spec.removeprefix("shipped:").split("@", 1)[0])
    if spec.startswith("file:"):
        return load_file(spec.removeprefix("file:"))
    if spec in list_shipped():
        return shipped_dataset(spec)
    if Path(spec).suffix.lower() in (".csv", ".jsonl", ".json", ".ndjson") or Path(spec).exists():
        return load_file(spec)
    known = ", ".join(sorted(list_shipped()))
    raise DataError(f"unknown data set {spec!r}: not a shipped name ({known}) nor a CSV/JSONL path")
