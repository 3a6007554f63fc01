"""A cascade's first steps start while Prefect starts: the flow's derive takes the
early run's result, and the version it commits is the one it would have made."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cascade_helpers import HERE, REPO, build_family

from lineage.cascade import build_plan
from lineage.cascade.headstart import HeadStart, child_head_starts, children_starter, first_nodes
from lineage.cascade.node import derive_node
from lineage.ops.parents import checkout_parent, shared_parent_checkouts
from lineage.steps.pool import ProcessPool
from lineage.steps.spec import ProbeSpec
from lineage.workspace import Workspace

pytestmark = pytest.mark.timeout(300)


def _family(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """The toy family (`build_family`), its recipes importable by the workers too."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE), str(REPO)]))
    ws = Workspace.init(tmp_path / "ws")
    build_family(ws, tmp_path / "weights")
    return ws


def _opener(ws: Workspace) -> Callable[[], Workspace]:
    return lambda: ws


def _tensors(ws: Workspace, ref: str) -> list[tuple[str, str, str]]:
    return [(f.path, t.name, t.object) for f, t in ws.manifest(ref).tensors()]


def test_the_flow_takes_the_head_start_and_commits_the_same_version(
    tmp_path: Path, toy_path: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The toy recipes, for the workers too.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE), str(REPO)]))
    with_head, without = (Workspace.init(tmp_path / name) for name in ("head", "plain"))
    for ws in (with_head, without):
        build_family(ws, tmp_path / f"weights-{ws.root.name}")
    plan = build_plan(with_head, "base@2")
    with shared_parent_checkouts(), ProcessPool(slots=2, threads=1) as pool:
        pool.run_step(ProbeSpec(out=str(tmp_path / "probe")))  # the workers are up
        head = HeadStart(lambda: with_head, "base@2", None, pool)
        started = head.wait(timeout_s=120)
        time.sleep(0.5)  # the step runs meanwhile, as while Prefect starts
        # The node the flow starts first (the most work below it), nothing committed yet.
        assert started == [n.model for n in first_nodes(plan, 1)] == ["ft"]
        assert with_head.resolve("ft").ref == "ft@1"
        node = plan.node("ft")
        early = derive_node(with_head, node, node.parent_refs({}), runner=pool)
        head.close()
        assert pool.early_taken == 1 and early.head_start_s >= 0.5
        plain = derive_node(without, node, node.parent_refs({}), runner=pool)
        assert pool.early_taken == 1 and plain.head_start_s == 0
    assert early.new_ref == plain.new_ref == "ft@2"
    assert _tensors(with_head, "ft@2") == _tensors(without, "ft@2")
    assert early.tests is not None and plain.tests is not None
    assert (early.tests.passed, early.tests.total) == (plain.tests.passed, plain.tests.total)


def test_no_head_start_once_the_flow_asks_for_its_steps(
    tmp_path: Path, toy_path: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = _family(tmp_path, monkeypatch)
    with shared_parent_checkouts(), ProcessPool(slots=2, threads=1) as pool:
        pool.close_early()  # the flow started before the head start got going
        head = HeadStart(lambda: ws, "base@2", None, pool)
        assert head.wait(timeout_s=120) == []
        head.close()
        node = build_plan(ws, "base@2").node("ft")
        assert derive_node(ws, node, node.parent_refs({}), runner=pool).head_start_s == 0
        assert pool.early_taken == 0


def test_children_start_on_their_parents_step_and_commit_the_same_versions(
    tmp_path: Path, toy_path: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ft's children start on the folder ft's step wrote, before ft@2 is committed;
    their derives take those steps and commit what they commit without."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE), str(REPO)]))
    with_head, without = (Workspace.init(tmp_path / name) for name in ("head", "plain"))
    for ws in (with_head, without):
        build_family(ws, tmp_path / f"weights-{ws.root.name}")
    plan = build_plan(with_head, "base@2")
    made: dict[str, dict[str, tuple[str, float]]] = {}
    with ProcessPool(slots=2, threads=1) as pool:
        for ws in (with_head, without):
            starts = ws is with_head
            with shared_parent_checkouts(), child_head_starts(_opener(ws), plan, pool):
                hook = children_starter("ft") if starts else None
                ft = plan.node("ft")
                derived = derive_node(ws, ft, ft.parent_refs({}), runner=pool, on_step_done=hook)
                for child in ("ft-q", "merged"):
                    node = plan.node(child)
                    outcome = derive_node(
                        ws, node, node.parent_refs({"ft": derived.new_ref}), runner=pool
                    )
                    made.setdefault(ws.root.name, {})[child] = (
                        outcome.new_ref,
                        outcome.head_start_s,
                    )
            # ft-q and merged took their early steps; tight's (its test fails) nobody took.
            assert pool.early_taken == 2
    assert {c: ref for c, (ref, _) in made["head"].items()} == {
        "ft-q": "ft-q@2",
        "merged": "merged@2",
    }
    assert all(head > 0 for _, head in made["head"].values())
    assert all(head == 0 for _, head in made["plain"].values())
    for ref in ("ft-q@2", "merged@2"):
        assert _tensors(with_head, ref) == _tensors(without, ref)
        assert with_head.resolve(ref).extra.get("derive_seconds") is not None


def test_a_node_whose_tests_fail_starts_no_children(
    tmp_path: Path, toy_path: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = _family(tmp_path, monkeypatch)
    plan = build_plan(ws, "base@2")
    folders: list[Path] = []
    with shared_parent_checkouts(), ProcessPool(slots=1, threads=1) as pool:
        made: dict[str, str | None] = {}
        for model in ("ft", "tight"):  # tight, a child of ft, fails its own size test
            node = plan.node(model)
            derived = derive_node(
                ws, node, node.parent_refs(made), runner=pool, on_step_done=folders.append
            )
            made[model] = derived.new_ref
            assert derived.tests is not None and derived.tests.passed == (model == "ft")
        assert len(folders) == 1  # ft's only
        # The folder the hook got is the one ft@2's children read (nothing checked out).
        assert checkout_parent(ws, "ft@2", tmp_path / "unused") == folders[0]
        assert not (tmp_path / "unused").exists()
