"""Steps of one cascade share each parent's checkout: made once, read-only, removed
when the cascade ends; outside a cascade every step checks out its own."""

from __future__ import annotations

import shutil
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from lineage.ops.add import add
from lineage.ops.parents import (
    checkout_parent,
    offer_checkout,
    settle_output,
    shared_parent_checkouts,
)
from lineage.testing import same_model_files


def test_children_of_one_parent_read_one_read_only_checkout(
    sqlite_workspace: Any, tiny_weights: Any, tmp_path: Path
) -> None:
    source = tiny_weights(0)
    add(sqlite_workspace, "base", source=source)
    with shared_parent_checkouts():
        with ThreadPoolExecutor(4) as pool:  # steps that start together wait for one
            found = set(
                pool.map(
                    lambda i: checkout_parent(sqlite_workspace, "base@1", tmp_path / f"own{i}"),
                    range(4),
                )
            )
        (shared,) = found
        assert checkout_parent(sqlite_workspace, "base", tmp_path / "other") == shared
        assert same_model_files(source, shared)
        assert not any(tmp_path.glob("own*"))
        for path in [shared, *shared.rglob("*")]:
            assert stat.S_IMODE(path.stat().st_mode) & 0o222 == 0, path
    assert not shared.exists()  # removed with the cascade
    own = checkout_parent(sqlite_workspace, "base@1", tmp_path / "own")
    assert own == tmp_path / "own" and same_model_files(source, own)


def test_a_checked_out_parent_stays_decoded_for_the_commit_that_follows(
    sqlite_workspace: Any, tiny_weights: Any, tmp_path: Path
) -> None:
    """The step's model is committed with its parent as delta base: the parent's
    tensors are not decoded a second time."""
    add(sqlite_workspace, "base", source=tiny_weights(0))
    store = sqlite_workspace.store
    tensors = [t for _, t in sqlite_workspace.manifest("base@1").tensors()]
    store.cache.clear()
    checkout_parent(sqlite_workspace, "base@1", tmp_path / "own")
    assert all(store.cache.get(t.object) is not None for t in tensors)


def test_a_committed_step_output_is_its_childrens_parent_folder(
    sqlite_workspace: Any, tiny_weights: Any, tmp_path: Path
) -> None:
    """Inside a cascade a re-derived node's output folder, just committed, is the
    checkout its children read: nothing is decoded or re-made for them."""
    source = tiny_weights(0)
    step_out = tmp_path / "step" / "model"
    shutil.copytree(source, step_out)
    version = add(sqlite_workspace, "ft", source=step_out)
    with shared_parent_checkouts():
        offer_checkout(version.manifest_id, step_out)
        assert not step_out.exists()  # moved, not copied
        shared = checkout_parent(sqlite_workspace, "ft@1", tmp_path / "own")
        assert same_model_files(source, shared) and not (tmp_path / "own").exists()
        assert all(stat.S_IMODE(p.stat().st_mode) & 0o222 == 0 for p in shared.rglob("*"))
        adapter = tmp_path / "adapter"
        shutil.copytree(source, adapter)
        (adapter / "adapter_config.json").write_text("{}")
        offer_checkout("0" * 64, adapter)  # a checkout would rewrite its base reference
        assert adapter.exists()
    offer_checkout(version.manifest_id, adapter)  # outside a cascade: nothing happens
    assert adapter.exists()


def test_an_output_settles_where_its_children_read_it_unless_it_holds_a_link(
    sqlite_workspace: Any, tiny_weights: Any, tmp_path: Path
) -> None:
    """Before its commit a step's output moves to the folder its children will read;
    one holding a link stays where it is, for the commit to refuse with its own error."""
    from lineage.errors import LineageError

    source = tiny_weights(0)
    step_out = tmp_path / "step"
    shutil.copytree(source, step_out)
    linked = tmp_path / "linked"
    shutil.copytree(source, linked)
    (linked / "secret.json").symlink_to(tmp_path / "elsewhere.json")
    assert settle_output(step_out) == step_out  # outside a cascade: nothing happens
    with shared_parent_checkouts():
        settled = settle_output(step_out)
        assert settled != step_out and not step_out.exists()
        assert all(stat.S_IMODE(p.stat().st_mode) & 0o222 == 0 for p in settled.rglob("*"))
        version = add(sqlite_workspace, "ft", source=settled)
        offer_checkout(version.manifest_id, settled)
        assert checkout_parent(sqlite_workspace, "ft@1", tmp_path / "own") == settled
        assert settle_output(linked) == linked and (linked / "secret.json").is_symlink()
        with pytest.raises(LineageError, match="link"):
            add(sqlite_workspace, "bad", source=linked)
    assert not settled.exists()  # removed with the cascade


def test_making_a_folder_read_only_leaves_what_its_links_point_to_alone(
    sqlite_workspace: Any, tiny_weights: Any, tmp_path: Path
) -> None:
    """A step's output the commit takes may hold a link where ingest never looks (in
    `.cache/`); offering it to the children must not chmod what the link points to."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "notes.txt").write_text("mine")
    step_out = tmp_path / "step"
    shutil.copytree(tiny_weights(0), step_out)
    (step_out / ".cache").mkdir()
    (step_out / ".cache" / "folder").symlink_to(outside)
    (step_out / ".cache" / "file").symlink_to(outside / "notes.txt")
    version = add(sqlite_workspace, "ft", source=step_out)
    with shared_parent_checkouts():
        offer_checkout(version.manifest_id, step_out)
        shared = checkout_parent(sqlite_workspace, "ft@1", tmp_path / "own")
        assert (shared / ".cache" / "folder").is_symlink()
        assert stat.S_IMODE((shared / "config.json").stat().st_mode) & 0o222 == 0
    assert stat.S_IMODE(outside.stat().st_mode) & 0o200
    assert stat.S_IMODE((outside / "notes.txt").stat().st_mode) & 0o200
