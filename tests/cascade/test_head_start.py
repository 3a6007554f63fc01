"""A cascade's first steps start while Prefect starts: the flow's derive takes the
early run's result, and the version it commits is the one it would have made."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from cascade_helpers import HERE, REPO, build_family

from lineage.cascade import build_plan
from lineage.cascade.headstart import HeadStart, first_nodes
from lineage.cascade.node import derive_node
from lineage.ops.parents import shared_parent_checkouts
from lineage.steps.pool import ProcessPool
from lineage.steps.spec import ProbeSpec
from lineage.workspace import Workspace

pytestmark = pytest.mark.timeout(300)


def _tensors(ws: Workspace, ref: str) -> list[tuple[str, str]]:
    return [(name, entry.object) for name, entry in ws.manifest(ref).tensors()]


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
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE), str(REPO)]))
    ws = Workspace.init(tmp_path / "ws")
    build_family(ws, tmp_path / "weights")
    with shared_parent_checkouts(), ProcessPool(slots=2, threads=1) as pool:
        pool.close_early()  # the flow started before the head start got going
        head = HeadStart(lambda: ws, "base@2", None, pool)
        assert head.wait(timeout_s=120) == []
        head.close()
        node = build_plan(ws, "base@2").node("ft")
        assert derive_node(ws, node, node.parent_refs({}), runner=pool).head_start_s == 0
        assert pool.early_taken == 0
