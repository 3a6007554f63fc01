"""Ingest reads no link and nothing but regular files (issue 12, item 2).

A folder someone else wrote (a recipe's output in a container, a shared checkout) must
not make lineage read files outside it: a ``config.json`` that links to the user's
credentials would otherwise be stored as a blob and written back by every checkout.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cli_helpers import cli, init_workspace, model_dir, one_error_line

from lineage.errors import WeightsError
from lineage.store import ObjectStore, ingest
from lineage.store.sources import OpenSource, check_weights_source, scan_source

SECRET = "aws_secret_access_key = do-not-read-me\n"


def _secret(tmp_path: Path) -> Path:
    path = tmp_path / "home" / ".aws" / "credentials"
    path.parent.mkdir(parents=True)
    path.write_text(SECRET)
    return path


def _nothing_stored(store: ObjectStore) -> bool:
    return not list(store.iter_objects()) and not list(store.iter_manifests())


@pytest.mark.parametrize("where", ["config.json", "nested/config.json"])
def test_a_file_link_is_refused_and_never_read(tmp_path: Path, where: str) -> None:
    model = model_dir(tmp_path / "m")
    link = model / where
    link.parent.mkdir(exist_ok=True)
    if link.exists():
        link.unlink()
    link.symlink_to(_secret(tmp_path))
    store = ObjectStore.open(tmp_path / "objects")
    with pytest.raises(WeightsError, match=f"refusing symbolic link .*{where}"):
        ingest(store, model)
    assert _nothing_stored(store)
    with pytest.raises(WeightsError, match="symbolic link"):
        check_weights_source(model)


def test_a_folder_link_and_a_linked_source_are_refused(tmp_path: Path) -> None:
    model = model_dir(tmp_path / "m")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "notes.txt").write_text(SECRET)
    (model / "docs").symlink_to(outside, target_is_directory=True)
    store = ObjectStore.open(tmp_path / "objects")
    with pytest.raises(WeightsError, match=r"refusing symbolic link .*docs"):
        ingest(store, model)
    (model / "docs").unlink()
    (tmp_path / "alias").symlink_to(model, target_is_directory=True)
    with pytest.raises(WeightsError, match=r"refusing symbolic link .*alias"):
        ingest(store, tmp_path / "alias")
    assert _nothing_stored(store)


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    model = model_dir(tmp_path / "m")
    os.mkfifo(model / "tokenizer.json")  # opening it for reading would block forever
    store = ObjectStore.open(tmp_path / "objects")
    with pytest.raises(WeightsError, match=r"refusing .*tokenizer\.json: not a regular file"):
        ingest(store, model)
    assert _nothing_stored(store)


def test_a_file_swapped_for_a_link_after_the_scan_is_refused(tmp_path: Path) -> None:
    model = model_dir(tmp_path / "m")
    files = {f.rel: f for f in scan_source(model)}
    config = model / "config.json"
    config.unlink()
    config.symlink_to(_secret(tmp_path))  # the race: swapped between listing and reading
    with pytest.raises(WeightsError, match=r"config\.json"):
        OpenSource(files["config.json"])


def test_a_file_name_no_manifest_can_hold_is_refused(tmp_path: Path) -> None:
    model = model_dir(tmp_path / "m")
    (model / "tab\tname.json").write_text("{}")
    store = ObjectStore.open(tmp_path / "objects")
    with pytest.raises(WeightsError, match="control character"):
        ingest(store, model)


def test_add_and_commit_refuse_links_with_one_error_line(tmp_path: Path) -> None:
    root = init_workspace(tmp_path / "ws")
    model = model_dir(tmp_path / "m")
    (model / "config.json").unlink()
    (model / "config.json").symlink_to(_secret(tmp_path))
    result = cli(["add", "m", "--from", str(model)], root)
    assert result.returncode == 7
    assert "symbolic link" in one_error_line(result) and "config.json" in result.stderr
    assert cli(["add", "m", "--from", str(model_dir(tmp_path / "ok"))], root).returncode == 0
    result = cli(["commit", "m", "--from", str(model)], root)
    assert result.returncode == 7 and "symbolic link" in one_error_line(result)
    log = cli(["log", "m", "--json"], root)
    assert log.returncode == 0 and log.stdout.count('"number"') == 1  # nothing recorded
    for path in (root / ".lineage" / "objects" / "objects").rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes()
