"""Recipes and tests through the workspace: provenance, inheritance, results, bisect."""

from __future__ import annotations

import pytest

from lineage.errors import ModelTestError, RecipeError
from lineage.ops.add import add
from lineage.ops.derive import add_from_recipe, rederive
from lineage.ops.tests import (
    bisect,
    declare_model_test,
    describe_tests,
    disable_test,
    resolve_tests,
    run_tests,
)
from lineage.workspace import Workspace

ACC = {"threshold": 0.9, "dataset": "sentiment", "max_examples": 60}


@pytest.fixture(scope="module")
def family(tmp_path_factory, tiny_sentiment):
    """base (trained) -> pruned (99% sparse: broken) -> pruned-int8."""
    ws = Workspace.init(tmp_path_factory.mktemp("ws"))
    add(ws, "base", source=tiny_sentiment, kind=None)
    add_from_recipe(ws, "pruned", recipe_id="prune", parents=["base"], params={"sparsity": 0.99})
    add_from_recipe(ws, "pruned-int8", recipe_id="quantize", parents=["pruned@latest"])
    declare_model_test(ws, "base", "acc", "accuracy", ACC)
    declare_model_test(ws, "base", "small", "size", {"max_bytes": 10_000_000})
    return ws


def test_provenance_is_recorded(family):
    v = family.resolve("pruned@1")
    assert v.recipe_id == "prune" and v.kind == "prune"
    assert v.recipe_params["sparsity"] == 0.99 and "seed" in v.recipe_params
    assert [p.ref for p in v.derivation_parents] == ["base@1"]  # pinned, not "base"
    assert v.code_version.startswith("lineage==") and "recipe=prune@1" in v.code_version
    assert v.extra["metrics"]["sparsity"] == pytest.approx(0.99, abs=0.01)


def test_inheritance_override_and_opt_out(family):
    resolved = {r.declaration.name: r for r in resolve_tests(family, "pruned-int8@1")}
    assert resolved["acc"].declared_on == "base" and resolved["acc"].inherited
    declare_model_test(family, "pruned", "small", "size", {"max_bytes": 20_000_000})
    resolved = {r.declaration.name: r for r in resolve_tests(family, "pruned-int8@1")}
    assert resolved["small"].declared_on == "pruned" and resolved["small"].overrides == ["base"]
    disable_test(family, "pruned-int8", "small")
    assert [r.declaration.name for r in resolve_tests(family, "pruned-int8@1")] == ["acc"]
    with pytest.raises(ModelTestError, match="invalid params: threshold"):
        declare_model_test(family, "base", "acc", "accuracy", {"threshold": "lots"})
    assert resolve_tests(family, "base@1")[0].declaration.params == ACC  # unchanged


def test_run_tests_stores_results_and_bisect_finds_the_break(family):
    report = run_tests(family, "base@1")
    assert report.passed and {r.name for r in report.results} == {"acc", "small"}
    stored = family.graph.latest_results(family.resolve("base@1").id)
    assert stored["acc"].passed and stored["acc"].declared_on == "base"
    shown = {t["name"]: t for t in describe_tests(family, "base@1")}
    assert shown["acc"]["latest"]["passed"] is True

    result = bisect(family, "acc", "pruned-int8@1")
    assert result.chain == ["base@1", "pruned@1", "pruned-int8@1"]
    assert result.first_failing == "pruned@1" and result.last_passing == "base@1"
    assert result.checked["base@1"]["source"] == "stored"
    assert result.checked["pruned-int8@1"]["source"] == "ran"


def test_rederive_is_bit_identical_and_versioned(family):
    again = rederive(family, "pruned@1", ["base@1"])
    first = family.resolve("pruned@1")
    assert again.ref == "pruned@2" and again.manifest_id == first.manifest_id
    assert again.previous_version.ref == "pruned@1"


def test_bad_recipe_input_stores_nothing(family):
    before = [v.ref for v in family.log("base")]
    with pytest.raises(RecipeError, match="unknown recipe"):
        add_from_recipe(family, "nope", recipe_id="nope", parents=["base"])
    with pytest.raises(RecipeError, match="sparsity"):
        add_from_recipe(family, "nope", recipe_id="prune", parents=["base"], params={"sparsity": 2})
    with pytest.raises(RecipeError, match="was not made by a recipe"):
        rederive(family, "base@1", ["base@1"])
    assert [v.ref for v in family.log("base")] == before
    assert "nope" not in [m.name for m in family.models()]
