"""Bad input is refused with one clear WeightsError line, and nothing is written."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from lineage.errors import WeightsError
from lineage.store import ObjectStore, ingest

from .helpers import f32, write_safetensors


def _nothing_stored(store: ObjectStore) -> bool:
    return not list(store.iter_objects()) and not list(store.iter_manifests())


def _raw_file(path: Path, header: dict, data: bytes) -> Path:
    text = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.pt", "w.pth", "last.ckpt"])
def test_pickle_checkpoints_are_refused_unread(store: ObjectStore, tmp_path: Path, name: str):
    model = tmp_path / "m"
    write_safetensors(model / "model.safetensors", {"w": f32(np.ones(3))})
    # a pickle that would run code if it were ever loaded
    (model / name).write_bytes(b"cos\nsystem\n(S'touch /tmp/pwned-lineage'\ntR.")
    with pytest.raises(WeightsError, match=r"refusing pickle checkpoint .*safetensors"):
        ingest(store, model)
    assert _nothing_stored(store)
    assert not Path("/tmp/pwned-lineage").exists()


def test_missing_path_and_no_weights(store: ObjectStore, tmp_path: Path):
    with pytest.raises(WeightsError, match="no such file"):
        ingest(store, tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text("{}")
    with pytest.raises(WeightsError, match="no weights"):
        ingest(store, tmp_path / "empty")


def _cases(tmp: Path) -> dict[str, tuple[Path, str]]:
    good = write_safetensors(tmp / "good.safetensors", {"a": f32(np.ones(4)), "b": f32(np.ones(2))})
    raw = good.read_bytes()
    cases: dict[str, tuple[Path, str]] = {}
    p = tmp / "truncated.safetensors"
    p.write_bytes(raw[:-3])
    cases["truncated"] = (p, "offsets lie")
    p = tmp / "short.safetensors"
    p.write_bytes(raw[:5])
    cases["no header length"] = (p, "truncated")
    p = tmp / "huge.safetensors"
    p.write_bytes(struct.pack("<Q", 10**12) + b"{}")
    cases["header length beyond file"] = (p, "exceeds the file")
    p = tmp / "json.safetensors"
    p.write_bytes(struct.pack("<Q", 5) + b"{nope")
    cases["malformed json"] = (p, "malformed safetensors header")
    cases["overlapping offsets"] = (
        _raw_file(
            tmp / "overlap.safetensors",
            {
                "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
            },
            b"\0" * 12,
        ),
        "offsets lie",
    )
    cases["size mismatch"] = (
        _raw_file(
            tmp / "size.safetensors",
            {"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}},
            b"\0" * 8,
        ),
        "offsets lie",
    )
    cases["unknown dtype"] = (
        _raw_file(
            tmp / "dtype.safetensors",
            {"a": {"dtype": "F128", "shape": [1], "data_offsets": [0, 16]}},
            b"\0" * 16,
        ),
        "unsupported tensor dtype 'F128'",
    )
    cases["bad shape"] = (
        _raw_file(
            tmp / "shape.safetensors",
            {"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}},
            b"\0" * 4,
        ),
        "malformed shape",
    )
    return cases


def test_malformed_safetensors_are_rejected(tmp_path: Path):
    for label, (path, message) in _cases(tmp_path / "files").items():
        store = ObjectStore.open(tmp_path / f"store-{path.stem}")
        model = tmp_path / f"model-{path.stem}"
        model.mkdir()
        (model / "config.json").write_text("{}")
        (model / "model.safetensors").write_bytes(path.read_bytes())
        with pytest.raises(WeightsError, match=message) as info:
            ingest(store, model)
        assert "\n" not in str(info.value), label
        assert _nothing_stored(store), label


def test_header_padding_and_metadata_preserved(store: ObjectStore, tmp_path: Path):
    from lineage.store import checkout

    src = write_safetensors(tmp_path / "m" / "w.safetensors", {"a": f32(np.arange(5))}, pad=7)
    checkout(store, ingest(store, src.parent), tmp_path / "out")
    assert (tmp_path / "out" / "w.safetensors").read_bytes() == src.read_bytes()
