"""Shipped data sets and users' CSV/JSONL files."""

from __future__ import annotations

import json

import pytest

from lineage.datasets import list_shipped, load_dataset, load_file, shipped_dataset
from lineage.datasets.shipped import _GENERATORS
from lineage.errors import DataError


@pytest.mark.parametrize("name", sorted(list_shipped()))
def test_shipped_sets_are_deterministic_and_split(name):
    ds = shipped_dataset(name)
    # Regenerate without the cache: same content, same fingerprint.
    fresh = shipped_dataset.__wrapped__(name)
    assert fresh.fingerprint == ds.fingerprint
    assert set(ds.splits) == {"train", "validation", "test"}
    assert 300 <= sum(len(v) for v in ds.splits.values()) <= 2000
    train, test = set(ds.texts("train")), set(ds.texts("test"))
    assert not train & test, "held-out texts leak into train"
    assert len(set(ds.label_ids("train"))) == len(ds.labels)
    assert name in _GENERATORS


def test_fingerprint_depends_on_content_not_format(tmp_path):
    rows = [("good film", "pos"), ("bad film", "neg"), ("great", "pos"), ("awful", "neg")] * 3
    csv_path = tmp_path / "d.csv"
    csv_path.write_text("text,label\n" + "".join(f"{t},{lab}\n" for t, lab in rows))
    jsonl_path = tmp_path / "d.jsonl"
    jsonl_path.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in rows))
    a, b = load_file(csv_path), load_file(jsonl_path)
    assert a.fingerprint == b.fingerprint
    assert a.labels == ("neg", "pos")
    csv_path.write_text(csv_path.read_text().replace("great", "grand"))
    assert load_file(csv_path).fingerprint != a.fingerprint


def test_split_column_is_respected(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text(
        "\n".join(
            json.dumps({"text": f"t{i}", "label": i % 2, "split": s})
            for i, s in enumerate(["train", "train", "validation", "test"])
        )
    )
    ds = load_dataset(p)
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 2, "validation": 1, "test": 1}
    assert ds.labels == ("0", "1")


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        (None, ".csv", "does not exist"),
        ("", ".csv", "is empty"),
        ("text,label\n", ".csv", "is empty"),
        ("sentence,target\nhi,1\n", ".csv", "lacks column(s) text, label"),
        ('{"text": "hi"}\n', ".jsonl", "lacks column(s) label"),
        ("not json\n", ".jsonl", "not JSON"),
        ("text,label\n,1\n", ".csv", "empty text"),
        ("text,label\nhi,1\n", ".txt", "unsupported format"),
        ("text,label,split\na,1,train\nb,0,dev\n", ".csv", "unknown split"),
        # An empty split next to a wrong one: both named, not a crash while sorting them.
        ("text,label,split\na,1,\nb,0,dev\n", ".csv", "unknown split value(s) None, dev"),
    ],
)
def test_bad_data_files(tmp_path, content, suffix, message):
    p = tmp_path / f"data{suffix}"
    if content is not None:
        p.write_text(content)
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_dataset(p)


def test_unknown_shipped_name():
    with pytest.raises(DataError, match="unknown data set 'nope'"):
        load_dataset("nope")
