"""Planning the cascade (no Prefect): order, levels, multi-parent nodes, skipped and
blocked subtrees, cache keys."""

from __future__ import annotations

import pytest

from lineage.cascade import build_plan, cache_key
from lineage.cascade.cache import find_done
from lineage.errors import UsageError
from lineage.ops.add import add, commit
from lineage.records import Provenance
from lineage.render.plan import describe_plan, plan_mermaid


def _recipe(name: str) -> Provenance:
    return Provenance(recipe_id=f"toy:{name}", recipe_params={"scale": 1.0})


@pytest.fixture
def family(sqlite_workspace, tiny_weights):  # type: ignore[no-untyped-def]
    """base@1 with a family below it; base@2 committed (not cascaded yet).

    base ─┬─ ft ──┬─ ft-q
          │       └─ merged (also from other@1; other has a newer other@2)
          ├─ frozen (no recipe) ── frozen-child
          └─ adapter
    """
    ws = sqlite_workspace
    add(ws, "base", source=tiny_weights(0))
    add(ws, "other", source=tiny_weights(1))
    commit(ws, "other", source=tiny_weights(2))
    add(
        ws,
        "ft",
        source=tiny_weights(3),
        parents=["base@1"],
        kind="finetune",
        provenance=_recipe("ft"),
    )
    # A second version of ft, still from base@1: the plan re-derives the newest one.
    commit(ws, "ft", source=tiny_weights(4), provenance=_recipe("ft"))
    add(
        ws,
        "ft-q",
        source=tiny_weights(5),
        parents=["ft@1"],
        kind="quantize",
        provenance=_recipe("q"),
    )
    add(
        ws,
        "merged",
        source=tiny_weights(6),
        parents=["ft@2", "other@1"],
        kind="merge",
        provenance=_recipe("merge"),
    )
    add(ws, "frozen", source=tiny_weights(7), parents=["base@1"], kind="other")
    add(
        ws,
        "frozen-child",
        source=tiny_weights(8),
        parents=["frozen@1"],
        kind="prune",
        provenance=_recipe("prune"),
    )
    add(
        ws,
        "adapter",
        source=tiny_weights(9),
        parents=["base@1"],
        kind="adapter",
        provenance=_recipe("lora"),
    )
    commit(ws, "base", source=tiny_weights(10))
    return ws


def test_plan_order_levels_and_parents(family) -> None:  # type: ignore[no-untyped-def]
    plan = build_plan(family, "base@2")
    assert (plan.upstream, plan.replaces) == ("base@2", "base@1")
    derive = [n.model for n in plan.to_derive]
    assert sorted(derive) == ["adapter", "ft", "ft-q", "merged"]
    # Topological: every node after the plan parents it waits for.
    position = {m: i for i, m in enumerate(derive)}
    for node in plan.to_derive:
        for parent in node.plan_parents:
            assert position[parent] < position[node.model]
    assert plan.levels == [["adapter", "ft"], ["ft-q", "merged"]]
    ft = plan.node("ft")
    assert ft.old_ref == "ft@2"  # newest version of the model among the descendants
    assert [(p.source, p.new_ref) for p in ft.parents] == [("upstream", "base@2")]
    merged = plan.node("merged")
    # A merge waits for its re-derived parent and takes the newest of the other.
    assert [(p.model, p.source, p.new_ref) for p in merged.parents] == [
        ("ft", "plan", None),
        ("other", "newest", "other@2"),
    ]
    assert merged.level == 1
    assert plan.heights()["ft"] == 2


def test_skipped_nodes_and_their_subtrees(family) -> None:  # type: ignore[no-untyped-def]
    plan = build_plan(family, "base@2")
    skipped = {n.model: n.reason for n in plan.skipped}
    assert set(skipped) == {"frozen", "frozen-child"}
    assert "no recipe" in skipped["frozen"]
    assert "none of its parents" in skipped["frozen-child"]
    assert plan.node("frozen").level is None


def test_blocked_subtree_is_exactly_the_descendants(family) -> None:  # type: ignore[no-untyped-def]
    plan = build_plan(family, "base@2")
    assert plan.subtree("ft") == ["ft-q", "merged"]
    assert plan.subtree("adapter") == []
    assert plan.subtree("ft-q") == []


def test_dry_run_text_and_json(family) -> None:  # type: ignore[no-untyped-def]
    plan = build_plan(family, "base@2")
    text = "\n".join(describe_plan(plan))
    assert "4 to re-derive in 2 level(s), 2 skipped" in text
    assert "merged@1 -> merged@next" in text and "ft@next, other@2" in text
    data = plan.to_dict()
    assert data["to_derive"] == 4 and data["levels"][0] == ["adapter", "ft"]
    assert "flowchart TD" in plan_mermaid(plan, {"ft": "failed"})


def test_replaces_defaults_and_errors(family) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UsageError, match="first version"):
        build_plan(family, "base@1")
    with pytest.raises(UsageError, match="itself"):
        build_plan(family, "base@2", "base@2")
    # An explicit --replaces works across models too.
    plan = build_plan(family, "other@2", "other@1")
    assert [n.model for n in plan.to_derive] == ["merged"]
    assert [p.source for p in plan.node("merged").parents] == ["newest", "upstream"]


def test_cache_key_ingredients() -> None:
    key = cache_key("m", "r", {"a": 1, "b": 2}, ["p@2"], "fp")
    assert key == cache_key("m", "r", {"b": 2, "a": 1}, ["p@2"], "fp")
    assert key != cache_key("m", "r", {"a": 1, "b": 2}, ["p@3"], "fp")
    assert key != cache_key("m2", "r", {"a": 1, "b": 2}, ["p@2"], "fp")
    assert key != cache_key("m", "r", {"a": 1, "b": 2}, ["p@2"], "fp2")
    assert key != cache_key("m", "r", {"a": 1, "b": 3}, ["p@2"], "fp")
    assert key != cache_key("m", "r", {"a": 1, "b": 2}, ["p@2", "q@1"], "fp")


def test_find_done_uses_the_derive_cache(family, tiny_weights) -> None:  # type: ignore[no-untyped-def]
    """What a crashed run already derived is reported (and would be reused)."""
    from lineage.cascade import cache

    ws = family
    plan = build_plan(ws, "base@2")
    assert find_done(ws, plan) == {}
    # A previous run derived ft on base@2 (committed, then cached).
    ft = plan.node("ft")
    made = commit(
        ws,
        "ft",
        source=tiny_weights(20),
        parents=["base@2"],
        kind="finetune",
        provenance=_recipe("ft"),
    )
    ws.graph.remember_derivation(
        cache.cache_key("ft", ft.recipe_id, ft.recipe_params, ["base@2"], ft.data_fingerprint),
        made.id,
    )
    assert find_done(ws, plan) == {"ft": "ft@3"}
    assert "ft@2 -> ft@3 (done)" in "\n".join(describe_plan(plan))
    # Committed but never cached (killed in between): recognised by its provenance.
    adapter = commit(
        ws,
        "adapter",
        source=tiny_weights(21),
        parents=["base@2"],
        kind="adapter",
        provenance=_recipe("lora"),
    )
    assert find_done(ws, plan)["adapter"] == adapter.ref
