"""`merge`: the weighted average of several parents' weights (a model soup).

All parents must be float model directories of the same architecture, with the
same tensor names and shapes (siblings fine-tuned from one base, typically).
Averaging is done in float32 and cast back to the first parent's dtype; integer
tensors (buffers) must agree and are copied. Config and tokenizer come from the
first parent.

>>> from lineage.recipes import get_recipe
>>> get_recipe("merge").validate_params({"weights": [1, -1]})  # doctest: +ELLIPSIS
Traceback (most recent call last):
lineage.errors.RecipeError: recipe 'merge': invalid params: weights.1: Input should be ...
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from pydantic import Field, field_validator

from lineage.datasets import TextDataset
from lineage.errors import RecipeError, WeightsError
from lineage.recipes.base import DeriveResult, Recipe, RecipeParams
from lineage.recipes.builtin.quantize import _copy_side_files
from lineage.recipes.hf import WEIGHTS_FILE, inspect_model, write_json
from lineage.recipes.training import TrainingProgress

if TYPE_CHECKING:
    import torch


class MergeParams(RecipeParams):
    weights: list[Annotated[float, Field(ge=0)]] | None = Field(
        None, description="one weight per parent, in parent order (default: equal)"
    )

    @field_validator("weights")
    @classmethod
    def _positive_total(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and sum(v) <= 0:
            raise ValueError("must not all be zero")
        return v


def run_merge(
    parents: list[Path],
    params: MergeParams,
    data: TextDataset | None,
    out_dir: Path,
    progress: TrainingProgress | None = None,
) -> DeriveResult:
    """Average the parents' tensors with normalised weights."""
    import torch
    from safetensors.torch import load_file, save_file

    weights = params.weights or [1.0] * len(parents)
    if len(weights) != len(parents):
        raise RecipeError(
            f"recipe 'merge': invalid params: weights: {len(weights)} given "
            f"for {len(parents)} parents"
        )
    total = sum(weights)
    weights = [w / total for w in weights]
    infos = []
    for p in parents:
        try:
            info = inspect_model(p)
        except WeightsError as exc:
            raise RecipeError(f"recipe 'merge': parent {exc}") from None
        if info.layout != "model":
            raise RecipeError(
                f"recipe 'merge' cannot use parent {p}: it is a {info.layout} directory"
            )
        infos.append(info)
    first = infos[0]
    for info in infos[1:]:
        if info.model_type != first.model_type or info.labels != first.labels:
            raise RecipeError(
                f"recipe 'merge': parents {first.path} and {info.path} differ in architecture "
                f"({first.model_type}/{first.labels} vs {info.model_type}/{info.labels})"
            )
    state = [load_file(str(p / WEIGHTS_FILE)) for p in parents]
    names = sorted(state[0])
    for p, s in zip(parents[1:], state[1:], strict=True):
        if sorted(s) != names:
            diff = sorted(set(s) ^ set(names))[:3]
            raise RecipeError(
                f"recipe 'merge': {p} has different tensors than {parents[0]} ({diff})"
            )
    merged: dict[str, torch.Tensor] = {}
    for name in names:
        ts = [s[name] for s in state]
        if any(t.shape != ts[0].shape for t in ts):
            raise RecipeError(f"recipe 'merge': tensor {name} has different shapes across parents")
        if ts[0].is_floating_point():
            acc = torch.zeros(ts[0].shape, dtype=torch.float32)
            for w, t in zip(weights, ts, strict=True):
                acc += w * t.to(torch.float32)
            merged[name] = acc.to(ts[0].dtype).contiguous()
        else:
            if any(not torch.equal(t, ts[0]) for t in ts[1:]):
                raise RecipeError(f"recipe 'merge': integer tensor {name} differs across parents")
            merged[name] = ts[0].contiguous()
    save_file(merged, str(out_dir / WEIGHTS_FILE), metadata={"format": "pt"})
    write_json(out_dir / "config.json", first.config)
    _copy_side_files(parents[0], out_dir)
    if progress is not None:
        progress(1, 1, 0.0)
    return DeriveResult(metrics={"parents": float(len(parents))}, notes={"weights": weights})


MERGE = Recipe(
    id="merge",
    kind="merge",
    Params=MergeParams,
    run=run_merge,
    description="weighted average of several parents (model soup)",
    min_parents=2,
    max_parents=None,
)
