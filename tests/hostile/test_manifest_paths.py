"""Manifest paths are validated when a manifest is made and when it is read (issue 12,
item 3): the DB and the bucket may be shared, so a manifest with a path that leaves the
checkout folder can be planted by whoever writes either. Checkout refuses it before
writing anything, and `store verify` reports it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import cli, init_workspace, model_dir, one_error_line
from sqlalchemy import create_engine, select, update

from lineage.errors import CorruptObjectError
from lineage.graph import schema as t
from lineage.store import FileEntry, Manifest, ObjectStore, checkout, ingest, verify
from lineage.store.manifest import ManifestError, check_path

BAD_PATHS = {
    "parent": "../escaped.json",
    "deep parent": "a/../../escaped.json",
    "absolute": "/tmp/escaped.json",
    "backslash": "..\\escaped.json",
    "empty part": "a//escaped.json",
    "trailing slash": "a/",
    "dot": "./escaped.json",
    "nul": "escaped\x00.json",
    "empty": "",
}


@pytest.mark.parametrize("path", BAD_PATHS.values(), ids=BAD_PATHS.keys())
def test_check_path_refuses_paths_that_leave_the_folder(path: str) -> None:
    assert check_path(path) is not None
    with pytest.raises(ManifestError, match="path"):
        Manifest(files=[FileEntry(path, 2, "blob", object="0" * 64)])


def test_ordinary_paths_pass() -> None:
    for path in ("config.json", "tokenizer/vocab.txt", "a b/c-d_e.f", "..hidden", "x..y"):
        assert check_path(path) is None


def _plant(store: ObjectStore, good: Manifest, path: str) -> str:
    """Store a manifest naming a hostile path, under its true id (as an attacker who can
    write the bucket would), bypassing every check on the way in."""
    doc = good.to_dict()
    doc["files"][0]["path"] = path
    data = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    mid = store.object_id(data)
    store._put(f"manifests/{mid}.json", [data])
    store.flush()
    return mid


@pytest.mark.parametrize("name", ["parent", "absolute", "backslash", "nul"])
def test_a_planted_manifest_is_refused_on_read_and_reported(tmp_path: Path, name: str) -> None:
    store = ObjectStore.open(tmp_path / "objects")
    good = ingest(store, model_dir(tmp_path / "m"))
    good_id = store.put_manifest(good)
    bad_id = _plant(store, good, BAD_PATHS[name].replace("escaped", "config"))
    with pytest.raises(CorruptObjectError, match="unsafe file path"):
        store.get_manifest(bad_id)
    report = verify(store, {"good@1": good_id, "bad@1": bad_id})
    assert report.versions["good@1"].ok
    assert "unsafe file path" in (report.versions["bad@1"].manifest_error or "")


def test_checkout_keeps_every_file_inside_even_for_an_unchecked_manifest(tmp_path: Path) -> None:
    store = ObjectStore.open(tmp_path / "objects")
    good = ingest(store, model_dir(tmp_path / "m"))
    hostile = Manifest.from_dict(good.to_dict())
    hostile.files[0].path = "../escaped.json"  # edited after it was checked
    out = tmp_path / "deep" / "out"
    with pytest.raises(CorruptObjectError):
        checkout(store, hostile, out)
    assert not (tmp_path / "deep" / "escaped.json").exists()
    # a link planted inside the output folder is not followed either
    out.mkdir(parents=True)
    (out / "sub").symlink_to(tmp_path, target_is_directory=True)
    hostile.files[0].path = "sub/escaped.json"
    with pytest.raises(CorruptObjectError):
        checkout(store, hostile, out)
    assert not (tmp_path / "escaped.json").exists()


def test_cli_checkout_and_verify_on_a_planted_manifest(tmp_path: Path) -> None:
    root = init_workspace(tmp_path / "ws")
    assert cli(["add", "good", "--from", str(model_dir(tmp_path / "g"))], root).returncode == 0
    bad = model_dir(tmp_path / "b", seed=1)
    assert cli(["add", "bad", "--from", str(bad)], root).returncode == 0
    store = ObjectStore.open(root / ".lineage" / "objects")
    engine = create_engine(f"sqlite:///{root / '.lineage' / 'graph.db'}")
    with engine.begin() as conn:  # someone with write access to the DB and the bucket
        model_id = conn.execute(select(t.models.c.id).where(t.models.c.name == "bad")).scalar()
        version = conn.execute(select(t.versions).where(t.versions.c.model_id == model_id)).one()
        bad_id = _plant(store, store.get_manifest(version.manifest_id), "../../escaped.json")
        conn.execute(
            update(t.versions).where(t.versions.c.id == version.id).values(manifest_id=bad_id)
        )
    engine.dispose()
    result = cli(["checkout", "bad@1", str(tmp_path / "co" / "out")], root)
    assert result.returncode == 8
    assert "unsafe file path" in one_error_line(result)
    assert not (tmp_path / "escaped.json").exists() and not (tmp_path / "co").exists()
    result = cli(["store", "verify"], root)
    assert result.returncode == 8 and "unsafe file path" in result.stdout + result.stderr
    assert "good@1" not in result.stdout.replace("verified", "")  # only bad@1 is named
    assert cli(["store", "verify", "good@1"], root).returncode == 0
