"""A damaged object is never trusted and can be repaired from good bytes (issue 12,
item 6): a dedup hit on an object that fails verification rewrites it, and
`store verify --repair` re-ingests good bytes from folders or another store for every
damaged object it can match by hash, and says what stays unrepairable."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from cli_helpers import cli, flip_byte, init_workspace, model_dir
from safetensors.numpy import load_file, save_file

from lineage.store import ObjectStore, ingest, verify
from lineage.store.repair import open_repair_source, repair


def _object_path(root: Path, oid: str) -> Path:
    return root / "objects" / oid[:2] / oid


def _largest_tensor(store: ObjectStore, mid: str) -> str:
    return max(store.get_manifest(mid).tensors(), key=lambda ft: ft[1].nbytes)[1].object


def _fine_tune(src: Path, out: Path) -> Path:
    """Every weight nudged: a delta against `src` in the store."""
    out.mkdir(parents=True)
    tensors = load_file(str(src / "model.safetensors"))
    save_file(
        {k: v * np.float32(1.001) for k, v in tensors.items()}, str(out / "model.safetensors")
    )
    (out / "config.json").write_text((src / "config.json").read_text())
    return out


def test_a_dedup_hit_on_a_damaged_object_rewrites_it(tmp_path: Path) -> None:
    root = tmp_path / "objects"
    model = model_dir(tmp_path / "m", size=1 << 16)
    store = ObjectStore.open(root)
    first = store.put_manifest(ingest(store, model))
    victim = _largest_tensor(store, first)
    flip_byte(_object_path(root, victim))
    store = ObjectStore.open(root)  # a later process
    assert not verify(store, {"a@1": first}).ok
    second = store.put_manifest(ingest(store, model))  # the same weights, added again
    store = ObjectStore.open(root)
    report = verify(store, {"a@1": first, "b@1": second})
    assert report.ok, report.problems()


def test_repair_from_a_folder_fixes_a_damaged_delta_base(tmp_path: Path) -> None:
    root = tmp_path / "objects"
    base = model_dir(tmp_path / "base", size=1 << 16)
    tuned = _fine_tune(base, tmp_path / "tuned")
    store = ObjectStore.open(root)
    ids = {"base@1": store.put_manifest(ingest(store, base))}
    tuned_manifest = ingest(store, tuned, parents=[store.get_manifest(ids["base@1"])])
    ids["tuned@1"] = store.put_manifest(tuned_manifest)
    victim = _largest_tensor(store, ids["base@1"])
    assert any(
        store.object_header(t.object).get("base") == victim for _, t in tuned_manifest.tensors()
    )
    flip_byte(_object_path(root, victim))  # the base of a delta: both versions break
    missing = store.get_manifest(ids["base@1"]).files[0].object  # config.json
    assert missing is not None
    _object_path(root, missing).unlink()
    store = ObjectStore.open(root)
    before = verify(store, ids)
    assert not before.versions["base@1"].ok and not before.versions["tuned@1"].ok

    nothing = repair(ObjectStore.open(root), ids, [])
    assert not nothing.ok and {victim, missing} <= set(nothing.damaged_objects)
    assert any(victim in line for line in nothing.unrepairable)

    unrelated = model_dir(tmp_path / "unrelated", seed=7)
    report = repair(ObjectStore.open(root), ids, [unrelated, base])
    assert report.ok, report.unrepairable
    assert {victim, missing} <= set(report.repaired_objects)
    assert verify(ObjectStore.open(root), ids).ok


def test_repair_from_another_store_copies_objects_and_manifests(tmp_path: Path) -> None:
    model = model_dir(tmp_path / "m", size=1 << 16)
    damaged, backup = ObjectStore.open(tmp_path / "a"), ObjectStore.open(tmp_path / "b")
    mid = damaged.put_manifest(ingest(damaged, model))
    assert backup.put_manifest(ingest(backup, model)) == mid
    victim = _largest_tensor(damaged, mid)
    flip_byte(_object_path(tmp_path / "a", victim))
    other = model_dir(tmp_path / "other", seed=3, size=1 << 16)
    lost = damaged.put_manifest(ingest(damaged, other))
    backup.put_manifest(ingest(backup, other))
    (tmp_path / "a" / "manifests" / f"{lost}.json").unlink()
    source = open_repair_source(str(tmp_path / "b"))
    assert isinstance(source, ObjectStore)
    report = repair(ObjectStore.open(tmp_path / "a"), {"m@1": mid, "o@1": lost}, [source])
    assert report.ok, report.unrepairable
    assert report.repaired_objects == [victim] and report.repaired_manifests == [lost]


def test_cli_verify_repair(tmp_path: Path) -> None:
    root = init_workspace(tmp_path / "ws")
    model = model_dir(tmp_path / "m", size=1 << 16)
    assert cli(["add", "m", "--from", str(model)], root).returncode == 0
    store_root = root / ".lineage" / "objects"
    mid = json.loads(cli(["show", "m@1", "--json"], root).stdout)["manifest_id"]
    flip_byte(_object_path(store_root, _largest_tensor(ObjectStore.open(store_root), mid)))
    result = cli(["store", "verify", "--repair"], root)  # no source: nothing to repair from
    assert result.returncode == 8 and "unrepairable" in result.stdout
    result = cli(["store", "verify", "--repair", "--from", str(model)], root)
    assert result.returncode == 0, result.stderr
    assert "1 repaired" in result.stdout
    assert cli(["store", "verify"], root).returncode == 0
    assert cli(["store", "verify", "--from", str(model)], root).returncode == 8  # --repair only
