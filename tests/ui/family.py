"""The families the UI tests look at, made with tiny weights (no training).

`build_demo_family` has the shape of `make demo`'s family after its cascade: a base
with two versions, six models derived from it by every kind of recipe, a merge, next
versions made by a cascade (one failed its tests, so the merge below it is blocked),
aliases, real test results (size budgets, run by lineage), and the cascade's record.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from lineage.cascade.history import record_cascade_run
from lineage.ops.add import add, commit
from lineage.ops.promote import gate, promote, set_model_policy
from lineage.ops.tests import declare_model_test, disable_test, run_tests
from lineage.records import Provenance
from lineage.testing import write_tiny_weights
from lineage.workspace import Workspace

XSS = "<img src=x onerror=alert(1)>"
AUTHOR = "maria"

# model -> (parents at v1, kind, recipe, params, data)
FAMILY: dict[str, tuple[list[str], str | None, str | None, dict[str, Any], str | None]] = {
    "base": ([], None, None, {}, None),
    "sentiment": (["base@1"], "finetune", "finetune", {"steps": 20, "lr": 5e-5}, "sentiment"),
    "sentiment-int8": (["sentiment@1"], "quantize", "quantize", {"dtype": "int8"}, None),
    "sentiment-lora": (["base@1"], "adapter", "lora", {"steps": 20, "rank": 8}, "sentiment"),
    "sentiment-small": (["sentiment@1"], "distill", "distill", {"steps": 20}, "sentiment"),
    "sentiment-pruned": (["sentiment@1"], "prune", "prune", {"sparsity": 0.5}, None),
    "soup": (
        ["sentiment@1", "sentiment-pruned@1"],
        "merge",
        "merge",
        {"weights": [0.7, 0.3]},
        None,
    ),
    "topic": (["base@1"], "finetune", "finetune", {"steps": 20, "mode": "head"}, "topic"),
}
# The cascade base@1 -> base@2 re-derived every model but soup (blocked below a failure).
CASCADE_OUTCOMES = {
    "sentiment": "promoted",
    "topic": "promoted",
    "sentiment-lora": "candidate",
    "sentiment-int8": "promoted",
    "sentiment-small": "promoted",
    "sentiment-pruned": "failed",
    "soup": "blocked",
}
CASCADE_LEVELS = [
    ["sentiment", "sentiment-lora", "topic"],
    ["sentiment-int8", "sentiment-small", "sentiment-pruned"],
    ["soup"],
]


def _provenance(model: str, seed: int) -> Provenance:
    _, _, recipe, params, data = FAMILY[model]
    if recipe is None:
        return Provenance(extra={"data": None})
    extra: dict[str, Any] = {"data": data}
    if data is not None:
        # A plausible training curve and final metrics, as the recipes record them.
        start = 0.72 + 0.01 * seed
        extra["loss_curve"] = [[step, round(start * 0.93**step + 0.04, 4)] for step in range(21)]
        extra["metrics"] = {"accuracy": round(0.86 + 0.01 * (seed % 5), 3), "train_loss": 0.163}
    return Provenance(
        recipe_id=recipe,
        recipe_params=params,
        data_fingerprint=f"blake3:{seed:04d}9f1c2e7a55b0d4c3e2f1a0b9c8d7e6" if data else None,
        code_version=f"lineage.recipes.builtin.{recipe}@1",
        extra=extra,
    )


def build_demo_family(root: Path, graph_url: str = "") -> Workspace:
    """The 16-version demo family (see the module docstring) in a new workspace."""
    ws = Workspace.init(root / "demo-workspace", graph_url=graph_url)
    weights = root / "weights"
    seeds = iter(range(1, 100))

    def tiny(scale: float = 1.0) -> Path:
        return write_tiny_weights(weights / f"w{next(seeds)}", 0, scale=scale)

    add(
        ws,
        "base",
        source=tiny(),
        message="all-MiniLM-L6-v2",
        tags=["encoder", "minilm"],
        author=AUTHOR,
    )
    for model, (parents, kind, _, _, _) in FAMILY.items():
        if model == "base":
            continue
        add(
            ws,
            model,
            source=tiny(1.0 + 0.01 * len(model)),
            parents=parents,
            kind=kind,
            provenance=_provenance(model, len(model)),
            message=f"{model}: {kind} of {', '.join(parents)}",
            author=AUTHOR,
            tags=["demo"] + (["sentiment"] if model.startswith("sentiment") else []),
        )
    declare_model_test(ws, "base", "size", "size", {"max_params": 100_000})
    declare_model_test(ws, "sentiment-int8", "size", "size", {"max_params": 20_000})
    declare_model_test(ws, "sentiment-pruned", "small", "size", {"max_params": 1_000})
    disable_test(ws, "soup", "small")  # a merge is not held to the prune's budget
    for model in FAMILY:
        if model != "base":
            run_tests(ws, f"{model}@1")
    for model in ("sentiment", "sentiment-int8", "sentiment-lora", "sentiment-small", "topic"):
        promote(ws, f"{model}@1", reason="passed its tests", actor=AUTHOR, mlflow="off")

    # A new upstream version, and what the cascade made of it.
    started = datetime.now(UTC)
    commit(ws, "base", source=tiny(1.002), message="encoder adapted in-domain", author=AUTHOR)
    run_tests(ws, "base@2")
    nodes = []
    for level, models in enumerate(CASCADE_LEVELS):
        for model in models:
            outcome = CASCADE_OUTCOMES[model]
            node = {
                "model": model,
                "old_ref": f"{model}@1",
                "new_ref": None,
                "status": outcome,
                "cached": False,
                "level": level,
                "tests": {},
                "aliases": [],
                "error": "",
                "warnings": [],
                "seconds": 3.5,
            }
            if outcome == "blocked":
                node["error"] = "not derived: sentiment-pruned failed upstream of it"
            else:
                parents = [
                    "base@2" if p == "base@1" else p.replace("@1", "@2") for p in FAMILY[model][0]
                ]
                version = commit(
                    ws,
                    model,
                    source=tiny(1.003 + 0.01 * len(model)),
                    parents=parents,
                    kind=FAMILY[model][1],
                    message="cascade base@1 -> base@2",
                    author="lineage-cascade",
                    provenance=_provenance(model, len(model) + 1),
                )
                report = run_tests(ws, version.ref)
                node["new_ref"] = version.ref
                node["tests"] = {
                    "passed": report.passed,
                    "total": len(report.results),
                    "failed": [r.name for r in report.results if not r.passed],
                }
                if outcome == "failed":
                    node["error"] = "tests failed: small"
                elif outcome == "candidate":
                    set_model_policy(ws, model, require_approval=True)
                    gate(ws, version.ref, True, reason="awaits approval", actor="lineage-cascade")
                    node["aliases"] = ["candidate"]
                else:
                    promote(
                        ws, version.ref, reason="cascade", actor="lineage-cascade", mlflow="off"
                    )
                    node["aliases"] = ["champion", "previous"]
            nodes.append(node)
    counts: dict[str, int] = {}
    for node in nodes:
        counts[node["status"]] = counts.get(node["status"], 0) + 1
    counts["cached"] = 0
    record_cascade_run(
        ws,
        {
            "upstream": "base@2",
            "replaces": "base@1",
            "flow_run_id": "6f1c2b1e-2d4a-4f7e-9a51-3f2d0c9b8e11",
            "levels": CASCADE_LEVELS,
            "nodes": nodes,
            "counts": counts,
        },
        started_at=started,
        finished_at=started + timedelta(seconds=48),
    )
    return ws
