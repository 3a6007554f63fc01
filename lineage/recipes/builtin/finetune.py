"""`finetune`: train a sequence classifier on a data set.

`mode="full"` trains every weight; `mode="head"` freezes the encoder and trains
only the pooler and classifier (fast, and the encoder bytes dedup against the
parent in the store). A parent without a head (MiniLM) gets a fresh one; a parent
whose head has the same labels continues training it.

>>> from lineage.recipes import get_recipe
>>> get_recipe("finetune").validate_params({"mode": "head"}).lr   # head default
0.001
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from lineage.datasets import TextDataset
from lineage.recipes.base import DeriveResult, Recipe
from lineage.recipes.builtin.common import (
    TrainParams,
    finish_dir,
    require_data,
    train_classifier,
    validation_metrics,
)
from lineage.recipes.hf import load_classifier, load_tokenizer, require_encoder, save_model
from lineage.recipes.training import TrainingProgress

HEAD_LR = 1e-3


class FinetuneParams(TrainParams):
    mode: Literal["full", "head"] = Field("full", description="train all weights or the head only")
    lr: float = Field(None, gt=0, lt=1, description="peak learning rate (5e-5 full, 1e-3 head)")  # type: ignore[assignment]

    @model_validator(mode="before")
    @classmethod
    def _default_lr(cls, values: Any) -> Any:
        # The head alone needs a far larger step size than the whole network.
        if isinstance(values, dict) and values.get("lr") is None:
            values = {**values, "lr": HEAD_LR if values.get("mode") == "head" else 5e-5}
        return values


def run_finetune(
    parents: list[Path],
    params: FinetuneParams,
    data: TextDataset | None,
    out_dir: Path,
    progress: TrainingProgress | None = None,
) -> DeriveResult:
    """Fine-tune the single parent on `data`'s train split; report validation metrics."""
    data = require_data(data, "finetune")
    parent = parents[0]
    info = require_encoder(parent, "finetune")
    tokenizer = load_tokenizer(parent)
    model = load_classifier(parent, data.labels, info=info)
    if params.mode == "head":
        for name, p in model.named_parameters():
            p.requires_grad = name.startswith(("classifier.", "bert.pooler.", "roberta.pooler."))
    curve, train_s = train_classifier(
        model, tokenizer, data, params, steps=params.steps, label="finetune", progress=progress
    )
    for p in model.parameters():
        p.requires_grad = True
    metrics = {"train_seconds": train_s, "final_loss": curve[-1][1]}
    metrics |= validation_metrics(model, tokenizer, data, params.max_length)
    save_model(model, out_dir)
    finish_dir(out_dir, parent)
    return DeriveResult(metrics=metrics, loss_curve=curve)


FINETUNE = Recipe(
    id="finetune",
    kind="finetune",
    Params=FinetuneParams,
    run=run_finetune,
    description="sequence-classification fine-tune (full, or head-only with a frozen encoder)",
    needs_data=True,
)
