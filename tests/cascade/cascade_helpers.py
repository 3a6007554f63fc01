"""Helpers shared by the cascade tests (importable: this folder is on sys.path)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from lineage.ops.add import add, commit
from lineage.testing import write_tiny_weights

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
VENV_BIN = Path(sys.executable).parent
TOY = "toy_recipes"


def child_env(api_url: str | None = None, **extra: str) -> dict[str, str]:
    """Environment for processes the tests start: toy recipes importable, quiet
    Prefect, and the given API (or none)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_URL")}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(HERE), str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    )
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    env["PREFECT_LOGGING_LEVEL"] = "WARNING"
    if api_url:
        env["PREFECT_API_URL"] = api_url
    env.update(extra)
    return env


def provenance(recipe: str, **params: Any) -> Any:
    from lineage.records import Provenance

    return Provenance(recipe_id=f"{TOY}:{recipe}", recipe_params=params)


def build_family(
    ws: Any, weights_dir: Path, *, hang_flag: Path | None = None, commit_base: bool = True
) -> Path:
    """base@1 and below it:

        base ─┬─ ft ──┬─ ft-q
              │       ├─ merged (also from side@1)
              │       └─ tight (its own size test fails)
              ├─ broken (recipe always fails) ── broken-child
              └─ slow (waits while `hang_flag` exists; plain scale without one)

    then base@2 committed (unless `commit_base` is false; the weights for it are
    returned either way). Every descendant records a toy recipe; a size test
    declared on base is inherited by all of them.
    """
    from lineage.ops.code import trust
    from lineage.ops.tests import declare_model_test

    trust(ws, TOY)  # the toy recipes are `toy_recipes:NAME` references
    counter = iter(range(1000))

    def weights() -> Path:
        seed = next(counter)
        return write_tiny_weights(weights_dir / f"w{seed}", seed)

    add(ws, "base", source=weights())
    add(ws, "side", source=weights())
    add(
        ws,
        "ft",
        source=weights(),
        parents=["base@1"],
        kind="finetune",
        provenance=provenance("scale", factor=0.5),
    )
    add(
        ws,
        "ft-q",
        source=weights(),
        parents=["ft@1"],
        kind="quantize",
        provenance=provenance("scale", factor=2.0),
    )
    add(
        ws,
        "merged",
        source=weights(),
        parents=["ft@1", "side@1"],
        kind="merge",
        provenance=provenance("scale", factor=1.0),
    )
    add(
        ws,
        "tight",
        source=weights(),
        parents=["ft@1"],
        kind="prune",
        provenance=provenance("scale", factor=1.5),
    )
    add(
        ws,
        "broken",
        source=weights(),
        parents=["base@1"],
        kind="prune",
        provenance=provenance("explode"),
    )
    add(
        ws,
        "broken-child",
        source=weights(),
        parents=["broken@1"],
        kind="quantize",
        provenance=provenance("scale", factor=3.0),
    )
    slow_params = {"flag": str(hang_flag)} if hang_flag else {}
    add(
        ws,
        "slow",
        source=weights(),
        parents=["base@1"],
        kind="other",
        provenance=provenance("hang_while", **slow_params),
    )
    declare_model_test(ws, "base", "small-enough", "size", {"max_params": 100_000})
    declare_model_test(ws, "tight", "tiny-budget", "size", {"max_params": 10})
    new_base = weights()
    if commit_base:
        commit(ws, "base", source=new_base, message="new upstream")
    return new_base


def version_counts(ws: Any) -> dict[str, int]:
    return {model.name: int(model.latest or 0) for model in ws.models()}
