"""A cascade node derived and tested in one step: the same records as `lineage test`,
the thread count in the provenance, and the usual test run when the step cannot test."""

from __future__ import annotations

from pathlib import Path

import pytest
from cascade_helpers import provenance

from lineage.cascade.build import build_plan
from lineage.cascade.node import derive_node
from lineage.ops.add import add, commit
from lineage.ops.code import trust
from lineage.ops.tests import declare_model_test, run_tests
from lineage.steps.runners import InlineRunner
from lineage.testing import write_tiny_weights
from lineage.workspace import Workspace

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def family(tmp_path: Path, toy_path: None) -> Workspace:
    """base → ft (a toy recipe), a size test on base (inherited), base@2 committed."""
    ws = Workspace.init(tmp_path / "ws")
    trust(ws, "toy_recipes")
    add(ws, "base", source=write_tiny_weights(tmp_path / "w0", 0))
    add(
        ws,
        "ft",
        source=write_tiny_weights(tmp_path / "w1", 1),
        parents=["base@1"],
        kind="finetune",
        provenance=provenance("scale", factor=0.5),
    )
    declare_model_test(ws, "base", "small-enough", "size", {"max_params": 100_000})
    declare_model_test(ws, "ft", "tiny-budget", "size", {"max_params": 10})
    commit(ws, "base", source=write_tiny_weights(tmp_path / "w2", 2))
    return ws


def _fields(result: object) -> tuple[object, ...]:
    return tuple(
        getattr(result, name)
        for name in ("test_name", "kind", "declared_on", "metric", "value", "threshold", "passed")
    )


def test_tests_in_the_derive_step_store_what_lineage_test_stores(family: Workspace) -> None:
    node = build_plan(family, "base@2").node("ft")
    outcome = derive_node(family, node, ["base@2"], runner=InlineRunner(threads=1))
    assert outcome.tests is not None
    assert (outcome.tests.passed, outcome.tests.total, outcome.tests.failed) == (
        False,
        2,
        ["tiny-budget"],
    )
    version = family.resolve(outcome.new_ref)
    in_step = family.graph.latest_results(version.id)
    assert set(in_step) == {"small-enough", "tiny-budget"}
    # `lineage test` on the committed version stores the very same results.
    report = run_tests(family, version.ref)
    assert report.failed == ["tiny-budget"]
    again = family.graph.latest_results(version.id)
    for name in in_step:
        assert _fields(in_step[name]) == _fields(again[name])
    # The step's thread count is part of the version's provenance.
    assert (version.extra or {})["threads"] == 1 == outcome.threads


def test_a_test_that_cannot_run_in_the_step_is_left_to_the_test_task(
    family: Workspace,
) -> None:
    # An accuracy test without a data set cannot run anywhere: the derive stands, and
    # the usual test run reports the error, as before.
    declare_model_test(family, "ft", "acc", "accuracy", {"threshold": 0.5})
    node = build_plan(family, "base@2").node("ft")
    outcome = derive_node(family, node, ["base@2"], runner=InlineRunner())
    assert outcome.tests is None
    version = family.resolve(outcome.new_ref)
    assert version.number == 2 and family.graph.latest_results(version.id) == {}
    assert (version.extra or {})["threads"] == 2  # the determinism default


def test_without_tests_in_the_step(family: Workspace) -> None:
    node = build_plan(family, "base@2").node("ft")
    outcome = derive_node(family, node, ["base@2"], runner=InlineRunner(), with_tests=False)
    assert outcome.tests is None
    assert family.graph.latest_results(outcome.version_id) == {}
