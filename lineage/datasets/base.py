"""The in-memory text-classification data set every recipe and model test reads.

A data set is a list of labels and named splits of `(text, label_id)` examples.
Its fingerprint is the sha256 of a canonical byte form of exactly that content, so
the same examples give the same fingerprint whether they came from a shipped
template, a CSV or a JSONL file (the provenance records *what* was trained on).

>>> ds = TextDataset.from_rows("toy", [("good", "pos"), ("bad", "neg")] * 3)
>>> ds.labels
('neg', 'pos')
>>> len(ds.fingerprint)
64
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple

from lineage.errors import DataError

SPLITS = ("train", "validation", "test")


class Example(NamedTuple):
    """One labelled text; `label` indexes `TextDataset.labels`."""

    text: str
    label: int


@dataclass(frozen=True)
class TextDataset:
    """Labels plus named splits of examples. Immutable.

    >>> ds = TextDataset("toy", ("neg", "pos"), {"train": (Example("fine", 1),)})
    >>> ds.texts("train"), ds.label_ids("train")
    (['fine'], [1])
    """

    name: str
    labels: tuple[str, ...]
    splits: Mapping[str, tuple[Example, ...]]
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.labels:
            raise DataError(f"data set {self.name!r} has no labels")
        for split, examples in self.splits.items():
            for ex in examples:
                if not 0 <= ex.label < len(self.labels):
                    raise DataError(
                        f"data set {self.name!r}: label id {ex.label} in split {split!r} "
                        f"is outside 0..{len(self.labels) - 1}"
                    )

    @classmethod
    def from_rows(
        cls,
        name: str,
        rows: Iterable[tuple[str, str]],
        *,
        source: str = "",
        seed: int = 0,
    ) -> TextDataset:
        """Build from `(text, label_name)` rows, split 80/10/10 by a seeded shuffle.

        Labels are sorted (numerically when they all look like integers) so the
        label ids do not depend on row order.
        """
        rows = list(rows)
        if len(rows) < 3:
            raise DataError(
                f"data set {name!r} has {len(rows)} examples; at least 3 are needed "
                "(one each for train, validation and test)"
            )
        labels = _sorted_labels({label for _, label in rows})
        index = {label: i for i, label in enumerate(labels)}
        order = list(range(len(rows)))
        random.Random(seed).shuffle(order)
        n_eval = max(1, len(rows) // 10)
        parts = {
            "test": order[:n_eval],
            "validation": order[n_eval : 2 * n_eval],
            "train": order[2 * n_eval :],
        }
        splits = {
            split: tuple(Example(rows[i][0], index[rows[i][1]]) for i in sorted(idx))
            for split, idx in parts.items()
        }
        return cls(name, labels, splits, source)

    @classmethod
    def from_split_rows(
        cls, name: str, rows: Iterable[tuple[str, str, str]], *, source: str = ""
    ) -> TextDataset:
        """Build from `(split, text, label_name)` rows whose split is given."""
        rows = list(rows)
        labels = _sorted_labels({label for _, _, label in rows})
        index = {label: i for i, label in enumerate(labels)}
        splits: dict[str, list[Example]] = {}
        for split, text, label in rows:
            splits.setdefault(split, []).append(Example(text, index[label]))
        return cls(name, labels, {s: tuple(v) for s, v in splits.items()}, source)

    def split(self, name: str) -> tuple[Example, ...]:
        """The examples of split `name`; `DataError` if there is no such split or it is empty."""
        examples = self.splits.get(name)
        if not examples:
            have = ", ".join(s for s, v in self.splits.items() if v) or "none"
            raise DataError(f"data set {self.name!r} has no split {name!r} (it has: {have})")
        return examples

    def texts(self, split: str) -> list[str]:
        """Texts of a split, in order."""
        return [ex.text for ex in self.split(split)]

    def label_ids(self, split: str) -> list[int]:
        """Label ids of a split, in order."""
        return [ex.label for ex in self.split(split)]

    def canonical_bytes(self) -> bytes:
        """The bytes the fingerprint hashes: one JSON line per label and per example.

        Split names are written in sorted order and labels by name, so the bytes
        depend on content only.
        """
        lines = [json.dumps({"labels": list(self.labels)}, ensure_ascii=False)]
        for split in sorted(self.splits):
            for ex in self.splits[split]:
                lines.append(
                    json.dumps(
                        {"split": split, "text": ex.text, "label": self.labels[ex.label]},
                        ensure_ascii=False,
                        sort_keys=True,
                    )
                )
        return ("\n".join(lines) + "\n").encode("utf-8")

    @cached_property
    def fingerprint(self) -> str:
        """sha256 (hex) of `canonical_bytes()`."""
        return hashlib.sha256(self.canonical_bytes()).hexdigest()

    def summary(self) -> dict[str, object]:
        """A small JSON-able description (for `--json` output and provenance)."""
        return {
            "name": self.name,
            "source": self.source,
            "labels": list(self.labels),
            "sizes": {s: len(v) for s, v in sorted(self.splits.items())},
            "fingerprint": self.fingerprint,
        }


def _sorted_labels(labels: set[str]) -> tuple[str, ...]:
    # Integer-looking labels sort numerically ("2" before "10"); anything else by text.
    if all(label.lstrip("-").isdigit() for label in labels):
        return tuple(sorted(labels, key=int))
    return tuple(sorted(labels))
