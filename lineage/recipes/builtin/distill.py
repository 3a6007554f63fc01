"""`distill`: a shallower student initialised from some of the teacher's layers.

The student copies the teacher's embeddings, head and the encoder layers listed in
`layers` (default: every other layer), then learns to match the teacher on the
data set's texts:

- teacher with a classification head: KL divergence between temperature-softened
  logits (times T², Hinton et al.), mixed with cross-entropy on the labels by `alpha`;
- embedding teacher (MiniLM): mean squared error between the normalised
  mean-pooled sentence embeddings, scaled by the hidden size.

The last parent is the teacher; with several parents the first one provides the
initial layers (e.g. a smaller sibling) — usually there is one parent.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from lineage.datasets import Example, TextDataset
from lineage.errors import RecipeError
from lineage.recipes.base import DeriveResult, Recipe
from lineage.recipes.builtin.common import TrainParams, finish_dir, require_data
from lineage.recipes.hf import (
    load_plain,
    load_tokenizer,
    quiet_transformers,
    require_encoder,
    save_model,
)
from lineage.recipes.training import (
    TrainingProgress,
    batches,
    classifier_metrics,
    embed,
    encode,
    pooled,
    predict_logits,
    train_steps,
)

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

_LAYER_RE = re.compile(r"(^|\.)encoder\.layer\.(\d+)\.")


class DistillParams(TrainParams):
    lr: float = Field(1e-4, gt=0, lt=1, description="peak learning rate")
    layers: tuple[int, ...] | None = Field(
        None, min_length=1, description="teacher layer indices to keep (default every other)"
    )
    temperature: float = Field(2.0, gt=0, description="softmax temperature for logit matching")
    alpha: float = Field(0.0, ge=0, le=1, description="weight of label cross-entropy (heads only)")


def student_layers(params: DistillParams, teacher_layers: int) -> list[int]:
    """The teacher layers the student keeps, validated against the teacher's depth."""
    layers = list(params.layers) if params.layers is not None else list(range(0, teacher_layers, 2))
    bad = [i for i in layers if not 0 <= i < teacher_layers]
    if bad:
        raise RecipeError(
            f"recipe 'distill': invalid params: layers: {bad} out of range (teacher has "
            f"{teacher_layers} layers, 0..{teacher_layers - 1})"
        )
    if len(set(layers)) != len(layers) or layers != sorted(layers):
        raise RecipeError("recipe 'distill': invalid params: layers: must be strictly increasing")
    return layers


def init_student(teacher: PreTrainedModel, layers: list[int]) -> PreTrainedModel:
    """A copy of `teacher` with only `layers`, renumbered 0..len-1."""
    config = teacher.config.__class__.from_dict(teacher.config.to_dict())
    config.num_hidden_layers = len(layers)
    with quiet_transformers():
        student = type(teacher)(config)
    remap = {old: new for new, old in enumerate(layers)}
    state = {}
    for name, tensor in teacher.state_dict().items():
        m = _LAYER_RE.search(name)
        if m is None:
            state[name] = tensor.clone()
        elif int(m.group(2)) in remap:
            new = f"{m.group(1)}encoder.layer.{remap[int(m.group(2))]}."
            state[name[: m.start()] + new + name[m.end() :]] = tensor.clone()
    student.load_state_dict(state, strict=True)
    return student


def run_distill(
    parents: list[Path],
    params: DistillParams,
    data: TextDataset | None,
    out_dir: Path,
    progress: TrainingProgress | None = None,
) -> DeriveResult:
    """Distil the teacher into a student with fewer layers."""
    import torch

    data = require_data(data, "distill")
    teacher_dir = parents[-1]
    info = require_encoder(teacher_dir, "distill")
    for p in parents[:-1]:
        require_encoder(p, "distill")
    tokenizer = load_tokenizer(teacher_dir)
    teacher = load_plain(teacher_dir, info)
    teacher.eval()  # type: ignore[no-untyped-call]  # unannotated in transformers
    for weight in teacher.parameters():
        weight.requires_grad = False
    init_from = load_plain(parents[0]) if len(parents) > 1 else teacher
    n_layers = int(json.loads((parents[0] / "config.json").read_text())["num_hidden_layers"])
    layers = student_layers(params, n_layers)
    student = init_student(init_from, layers)
    student.train()
    T = params.temperature

    def compute(batch: list[Example]) -> torch.Tensor:
        enc = encode(tokenizer, [e.text for e in batch], params.max_length)
        if info.has_head:
            with torch.no_grad():
                t_logits = teacher(**enc).logits
            s_logits = student(**enc).logits
            kd = torch.nn.functional.kl_div(
                torch.log_softmax(s_logits / T, -1),
                torch.softmax(t_logits / T, -1),
                reduction="batchmean",
            ) * (T * T)
            if params.alpha > 0:
                ce = torch.nn.functional.cross_entropy(
                    s_logits, torch.tensor([e.label for e in batch])
                )
                return (1 - params.alpha) * kd + params.alpha * ce
            return kd
        with torch.no_grad():
            t_emb = pooled(teacher, enc)
        s_emb = pooled(student, enc)
        # Unit vectors have tiny per-dimension errors; scale so the loss is O(1).
        return torch.nn.functional.mse_loss(s_emb, t_emb) * s_emb.shape[-1]

    start = time.perf_counter()
    curve = train_steps(
        list(student.parameters()),
        compute,
        batches(data.split("train"), params.batch_size, params.seed),
        steps=params.steps,
        lr=params.lr,
        weight_decay=params.weight_decay,
        warmup_ratio=params.warmup_ratio,
        progress=progress,
        label="distill",
    )
    metrics = {
        "train_seconds": time.perf_counter() - start,
        "final_loss": curve[-1][1],
        "student_layers": float(len(layers)),
        "teacher_layers": float(n_layers),
    }
    metrics |= _agreement(teacher, student, tokenizer, data, info.labels, params.max_length)
    save_model(student, out_dir)
    finish_dir(out_dir, teacher_dir)
    return DeriveResult(metrics=metrics, loss_curve=curve, notes={"layers": layers})


def _agreement(
    teacher: torch.nn.Module,
    student: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    data: TextDataset,
    labels: tuple[str, ...] | None,
    max_length: int,
) -> dict[str, float]:
    split = "validation" if data.splits.get("validation") else "train"
    texts = data.texts(split)
    if labels:
        t = predict_logits(teacher, tokenizer, texts, max_length=max_length).argmax(-1)
        s = predict_logits(student, tokenizer, texts, max_length=max_length).argmax(-1)
        out = {"teacher_agreement": float((t == s).float().mean())}
        if labels == data.labels:  # accuracy only means something on the same labels
            out |= classifier_metrics(
                student, tokenizer, data.split(split), len(data.labels), max_length=max_length
            )
        return out
    t = embed(teacher, tokenizer, texts, max_length=max_length)
    s = embed(student, tokenizer, texts, max_length=max_length)
    return {"teacher_cosine": float((t * s).sum(-1).mean())}


DISTILL = Recipe(
    id="distill",
    kind="distill",
    Params=DistillParams,
    run=run_distill,
    description="student with a subset of the teacher's layers, trained to match the teacher",
    needs_data=True,
    max_parents=2,
)
