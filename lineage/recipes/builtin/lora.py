"""`lora`: a PEFT LoRA adapter for sequence classification.

By default the output is an adapter directory (`adapter_config.json`,
`adapter_model.safetensors` with the LoRA matrices and the classifier head, plus
`lineage_adapter.json` naming the labels): a few hundred kB that needs its base
— the parent — to run, which is what an `adapter` edge records. With
`merge=true` the adapter is folded into the base and a full model is written.

Loading an adapter: `lineage.recipes.hf.load_for_inference(adapter_dir, base_dir=parent_dir)`,
or with PEFT directly on a classifier loaded from the base with the same labels. The
stored config has `base_model_name_or_path: null` (the base is the parent version);
`lineage checkout` names it (`lineage:NAME@N`), and `lineage checkout REF DIR
--with-base` writes the base to `DIR/base` so `AutoPeftModelForSequenceClassification`
loads `DIR` offline (see `lineage.recipes.stock`).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from pydantic import Field

from lineage.datasets import TextDataset
from lineage.recipes.base import DeriveResult, Recipe
from lineage.recipes.builtin.common import (
    TrainParams,
    finish_dir,
    require_data,
    train_classifier,
    validation_metrics,
)
from lineage.recipes.hf import (
    ADAPTER_META,
    load_classifier,
    load_tokenizer,
    merged,
    require_encoder,
    save_model,
    write_json,
)
from lineage.recipes.training import TrainingProgress


class LoraParams(TrainParams):
    lr: float = Field(1e-3, gt=0, lt=1, description="peak learning rate")
    r: int = Field(8, gt=0, le=256, description="LoRA rank")
    alpha: float = Field(16.0, gt=0, description="LoRA scaling numerator (scale = alpha / r)")
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: tuple[str, ...] = Field(("query", "value"), min_length=1)
    merge: bool = Field(False, description="fold the adapter into a full model")


def run_lora(
    parents: list[Path],
    params: LoraParams,
    data: TextDataset | None,
    out_dir: Path,
    progress: TrainingProgress | None = None,
) -> DeriveResult:
    """Train LoRA matrices (and a classifier head) on the frozen parent."""
    from peft import LoraConfig, TaskType, get_peft_model

    data = require_data(data, "lora")
    parent = parents[0]
    info = require_encoder(parent, "lora")
    tokenizer = load_tokenizer(parent)
    base = load_classifier(parent, data.labels, info=info)
    config = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=params.r,
        # PEFT annotates lora_alpha as int but only divides by it; a float alpha is
        # what stored adapter configs record, so it is passed unchanged.
        lora_alpha=params.alpha,  # type: ignore[arg-type]
        lora_dropout=params.dropout,
        target_modules=list(params.target_modules),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # transformers deprecations inside PEFT
        model = get_peft_model(base, config)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    curve, train_s = train_classifier(
        model, tokenizer, data, params, steps=params.steps, label="lora", progress=progress
    )
    metrics = {
        "train_seconds": train_s,
        "final_loss": curve[-1][1],
        "trainable_params": float(trainable),
    }
    metrics |= validation_metrics(model, tokenizer, data, params.max_length)
    if params.merge:
        save_model(merged(model), out_dir)
        finish_dir(out_dir, parent)
        return DeriveResult(metrics=metrics, loss_curve=curve, layout="model")
    model.save_pretrained(str(out_dir))
    # PEFT's model card names the temporary base path; it is not part of the model.
    (out_dir / "README.md").unlink(missing_ok=True)
    _stabilise_adapter_config(out_dir / "adapter_config.json")
    write_json(
        out_dir / ADAPTER_META,
        {
            "base_model_type": info.model_type,
            "labels": list(data.labels),
            "format": "peft-lora",
        },
    )
    finish_dir(out_dir, parent)
    return DeriveResult(
        metrics=metrics, loss_curve=curve, layout="adapter", notes={"base": "parent 0"}
    )


def _stabilise_adapter_config(path: Path) -> None:
    # PEFT records the base's path, which is a temporary checkout here: drop it so
    # the same derive on the same parent content gives the same bytes.
    config = json.loads(path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = None
    write_json(path, config)


LORA = Recipe(
    id="lora",
    kind="adapter",
    Params=LoraParams,
    run=run_lora,
    description="PEFT LoRA adapter for sequence classification (optionally merged)",
    needs_data=True,
)
