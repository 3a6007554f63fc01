"""Item 1: a checkout never deletes the workspace, the user's files or a home folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import lineage.ops.checkout as checkout_module
from lineage.formats import CHECKOUT_MARKER
from lineage.ops.checkout import checkout
from lineage.testing import one_error_line, run_cli
from lineage.workspace import Workspace

from .conftest import files_under


def test_checkout_into_the_workspace_or_its_parents_is_refused(small_ws: Workspace) -> None:
    root = small_ws.root
    (root / "notes.txt").write_text("my own file")
    before = files_under(root)
    for target in (".", "..", str(root.parent.parent), ".lineage/objects/x"):
        done = run_cli(["checkout", "base@1", target, "--force"], root, check=False)
        assert done.returncode == 2, (target, done.stderr)
        assert "refusing to check out" in one_error_line(done)
        done = run_cli(["checkout", "base@1", target, "--replace-any"], root, check=False)
        assert done.returncode == 2, (target, done.stderr)
    assert files_under(root) == before  # graph DB, objects, the user's file: all there


def test_home_and_the_current_directory_are_refused(small_ws: Workspace, tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "work").mkdir(parents=True)
    (home / ".ssh").mkdir()
    (home / ".ssh" / "id_ed25519").write_text("secret")
    env = {"HOME": str(home), "LINEAGE_WORKSPACE": ""}
    for target, cwd in ((str(home), small_ws.root), (".", home / "work")):
        done = run_cli(
            ["-w", str(small_ws.root), "checkout", "base@1", target, "--replace-any"],
            cwd,
            check=False,
            env=env,
        )
        assert done.returncode == 2 and "refusing" in one_error_line(done)
    assert (home / ".ssh" / "id_ed25519").read_text() == "secret"


def test_force_replaces_only_an_earlier_checkout(small_ws: Workspace, tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("three years of work")
    done = run_cli(["checkout", "base@1", str(mine), "--force"], small_ws.root, check=False)
    assert done.returncode == 2 and "not an earlier lineage checkout" in one_error_line(done)
    assert (mine / "thesis.tex").read_text() == "three years of work"

    out = tmp_path / "out"
    run_cli(["checkout", "base@1", str(out)], small_ws.root)
    assert (out / CHECKOUT_MARKER).is_file()
    assert oct(out.stat().st_mode & 0o777) != "0o700"  # normal modes, not mkdtemp's
    run_cli(["checkout", "ft@1", str(out), "--force"], small_ws.root)
    assert '"ft@1"' in (out / CHECKOUT_MARKER).read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".lineage-")]

    run_cli(["checkout", "base@1", str(mine), "--replace-any"], small_ws.root)
    assert not (mine / "thesis.tex").exists() and (mine / CHECKOUT_MARKER).is_file()


def test_a_failed_swap_keeps_the_old_tree(
    small_ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = checkout(small_ws, "base@1", tmp_path / "out")
    before = files_under(out)
    real_replace = os.replace

    def replace(src: str | Path, dst: str | Path) -> None:
        if Path(src).name.startswith(".lineage-checkout-"):  # the new tree moving in
            raise OSError("disk gone")
        real_replace(src, dst)

    monkeypatch.setattr(checkout_module.os, "replace", replace)
    with pytest.raises(OSError, match="disk gone"):
        checkout(small_ws, "ft@1", out, force=True)
    assert files_under(out) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".lineage-")] == []
