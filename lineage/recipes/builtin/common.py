"""Parameters and steps shared by the training recipes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from lineage.bundled import copy_tokenizer
from lineage.datasets import Example, TextDataset
from lineage.errors import RecipeError
from lineage.recipes.base import RecipeParams
from lineage.recipes.training import TrainingProgress, encode

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase


class OptimParams(RecipeParams):
    """Optimizer knobs every training recipe has."""

    batch_size: int = Field(16, gt=0, le=4096)
    lr: float = Field(5e-5, gt=0, lt=1, description="peak learning rate")
    weight_decay: float = Field(0.0, ge=0, lt=1)
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    max_length: int = Field(64, gt=1, le=512, description="tokens per text")
    seed: int = Field(0, ge=0, description="seeds init, dropout and batch order")


class TrainParams(OptimParams):
    """Defaults fit MiniLM on the shipped sets in well under a minute on 2 cores."""

    steps: int = Field(60, gt=0, le=100_000, description="optimizer steps")


def require_data(data: TextDataset | None, recipe_id: str) -> TextDataset:
    """The data set, or `RecipeError` saying this recipe trains and needs one."""
    if data is None:
        raise RecipeError(f"recipe {recipe_id!r} trains, so it needs a data set")
    return data


def classification_loss(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, max_length: int
) -> Callable[[list[Example]], torch.Tensor]:
    """`compute_loss(batch)` for cross-entropy on a sequence classifier."""
    import torch

    def compute(batch: list[Example]) -> torch.Tensor:
        enc = encode(tokenizer, [e.text for e in batch], max_length)
        labels = torch.tensor([e.label for e in batch])
        loss: torch.Tensor = model(**enc, labels=labels).loss
        return loss

    return compute


def finish_dir(out_dir: Path, parent: Path) -> None:
    """Copy the parent's tokenizer next to the weights, so the child loads alone."""
    copy_tokenizer(parent, out_dir)


def train_classifier(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    data: TextDataset,
    params: OptimParams,
    *,
    steps: int,
    label: str,
    progress: TrainingProgress | None = None,
    after_step: Callable[[], None] | None = None,
) -> tuple[list[tuple[int, float]], float]:
    """Train `model` on the data's train split with the classification loss and the
    params' optimizer knobs; returns the loss curve and the seconds it took. Shared by
    finetune, lora and prune-recovery so the three train identically (and stay
    deterministic together)."""
    import time

    from lineage.recipes.training import batches, train_steps

    model.train()
    start = time.perf_counter()
    curve = train_steps(
        list(model.parameters()),
        classification_loss(model, tokenizer, params.max_length),
        batches(data.split("train"), params.batch_size, params.seed),
        steps=steps,
        lr=params.lr,
        weight_decay=params.weight_decay,
        warmup_ratio=params.warmup_ratio,
        progress=progress,
        label=label,
        after_step=after_step,
    )
    return curve, time.perf_counter() - start


def validation_metrics(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, data: TextDataset, max_length: int
) -> dict[str, float]:
    """Accuracy and macro-F1 on the data's validation split; empty when it has none."""
    from lineage.recipes.training import classifier_metrics

    if not data.splits.get("validation"):
        return {}
    return classifier_metrics(
        model, tokenizer, data.split("validation"), len(data.labels), max_length=max_length
    )
