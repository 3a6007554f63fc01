"""A cascade plan as text (`--dry-run`, logs) and as a table (the Prefect UI).

>>> from lineage.cascade import build_plan
>>> from lineage.ops.add import commit
>>> _ = commit(ws, "base", source=make_tiny_model(tmp / "base2", num_labels=2, seed=2))
>>> for line in describe_plan(build_plan(ws, "base@2")):
...     print(line)
cascade base@1 -> base@2: 0 to re-derive in 0 level(s), 1 skipped
skipped: ft@1: no recipe recorded (registered from weights), so it cannot be re-derived
"""

from __future__ import annotations

from typing import Any

from lineage.cascade.plan import CascadePlan, PlanParent


def _parent_label(parent: PlanParent) -> str:
    if parent.source == "plan":
        return f"{parent.model}@next"
    return parent.new_ref or parent.old_ref


def describe_plan(plan: CascadePlan) -> list[str]:
    """Plain-text lines of the plan (what `--dry-run` prints, and the flow logs once)."""
    lines = [
        f"cascade {plan.replaces} -> {plan.upstream}: {len(plan.to_derive)} to re-derive "
        f"in {len(plan.levels)} level(s), {len(plan.skipped)} skipped"
        + (f", {len(plan.done)} already done (reused)" if plan.done else "")
    ]
    by_model = {n.model: n for n in plan.nodes}
    for depth, models in enumerate(plan.levels):
        lines.append(f"level {depth} ({len(models)} in parallel):")
        for model in models:
            node = by_model[model]
            parents = ", ".join(_parent_label(p) for p in node.parents)
            target = f"{plan.done[model]} (done)" if model in plan.done else f"{model}@next"
            lines.append(
                f"  {node.old_ref} -> {target}  [{node.recipe_id} ({node.kind}) on {parents}]"
            )
    for node in plan.skipped:
        lines.append(f"skipped: {node.old_ref}: {node.reason}")
    return lines


def plan_mermaid(plan: CascadePlan, status: dict[str, str] | None = None) -> str:
    """The lineage subtree as a Mermaid flowchart; `status` colours nodes."""
    status = status or {}

    def node_id(name: str) -> str:
        return "n_" + "".join(ch if ch.isalnum() else "_" for ch in name)

    upstream_model = plan.upstream.split("@", 1)[0]
    lines = [
        "flowchart TD",
        f'  {node_id(upstream_model)}["{plan.replaces} → {plan.upstream}"]',
    ]
    for node in plan.nodes:
        label = f"{node.old_ref} → {status.get(node.model, node.action)}"
        lines.append(f'  {node_id(node.model)}["{label}"]')
    for node in plan.nodes:
        for parent in node.parents:
            if parent.source == "newest":
                continue
            source = upstream_model if parent.source == "upstream" else parent.model
            lines.append(f"  {node_id(source)} --> {node_id(node.model)}")
    classes = {
        "promoted": "fill:#c8f7c5",
        "candidate": "fill:#e3f7c5",
        "failed": "fill:#f7c5c5",
        "blocked": "fill:#eeeeee",
        "skip": "fill:#f7f3c5",
        "skipped": "fill:#f7f3c5",
    }
    for name, style in classes.items():
        members = [node_id(n.model) for n in plan.nodes if status.get(n.model, n.action) == name]
        if members:
            lines.append(f"  classDef {name} {style}")
            lines.append(f"  class {','.join(members)} {name}")
    return "\n".join(lines)


def node_tests_label(tests: dict[str, Any]) -> str:
    """How a node's tests ended, in a few words (summary tables)."""
    if not tests:
        return "-"
    if tests.get("skipped"):
        return "passed earlier"
    if tests["passed"]:
        return f"{tests['total']} passed"
    return f"failed: {', '.join(tests['failed']) or '?'}"
