"""The small training loop every training recipe shares, and evaluation helpers.

Plain torch (no `transformers.Trainer`): a few hundred steps on CPU do not need
its machinery, and owning the loop keeps the determinism guarantees in sight —
the batch order comes from a seeded `random.Random`, never from a DataLoader's
worker processes.
"""

from __future__ import annotations

import functools
import logging
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from lineage.datasets import Example

# torch and transformers are imported where they are used: the recipe registry and the
# model tests' parameters load without them (`lineage recipes`, a cascade's host).
if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger("lineage.recipes.training")

#: `progress(step, total_steps, loss)`, called after every optimizer step.
TrainingProgress = Callable[[int, int, float], None]

_P = ParamSpec("_P")
_R = TypeVar("_R")


def no_grad(function: Callable[_P, _R]) -> Callable[_P, _R]:
    """`torch.no_grad()` as a decorator that imports torch on the first call, not when
    the module is imported."""

    @functools.wraps(function)
    def without_grad(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        import torch

        with torch.no_grad():
            return function(*args, **kwargs)

    return without_grad


def batches(examples: Sequence[Example], batch_size: int, seed: int) -> Iterator[list[Example]]:
    """Endless shuffled batches; each epoch reshuffles with the same seeded RNG.

    >>> from lineage.datasets import Example
    >>> it = batches([Example(str(i), 0) for i in range(5)], 2, seed=0)
    >>> [len(next(it)) for _ in range(3)]
    [2, 2, 1]
    """
    rng = random.Random(seed)
    order = list(range(len(examples)))
    while True:
        rng.shuffle(order)
        for i in range(0, len(order), batch_size):
            yield [examples[j] for j in order[i : i + batch_size]]


def encode(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int
) -> dict[str, torch.Tensor]:
    """Tokenize, truncate and pad to the longest text of the batch."""
    return dict(
        tokenizer(
            list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
    )


def train_steps(
    params: Sequence[torch.nn.Parameter],
    compute_loss: Callable[[list[Example]], torch.Tensor],
    data: Iterator[list[Example]],
    *,
    steps: int,
    lr: float,
    weight_decay: float = 0.0,
    warmup_ratio: float = 0.1,
    progress: TrainingProgress | None = None,
    after_step: Callable[[], None] | None = None,
    label: str = "train",
) -> list[tuple[int, float]]:
    """AdamW with linear warm-up and decay for `steps` steps; returns the loss curve.

    `after_step` runs after each optimizer step under `no_grad` (prune uses it to
    re-apply its mask). Logs step/loss at INFO every tenth of the run.
    """
    import torch

    trainable = [p for p in params if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=weight_decay)
    warmup = max(1, int(steps * warmup_ratio))

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (steps - step) / max(1, steps - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    curve: list[tuple[int, float]] = []
    every = max(1, steps // 10)
    start = time.perf_counter()
    for step in range(1, steps + 1):
        loss = compute_loss(next(data))
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"{label}: loss became {loss.item()} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]  # unannotated in torch
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        scheduler.step()
        if after_step is not None:
            with torch.no_grad():
                after_step()
        value = float(loss.item())
        curve.append((step, value))
        if step % every == 0 or step == steps:
            log.info(
                "%s step %d/%d loss %.4f (%.1fs)",
                label,
                step,
                steps,
                value,
                time.perf_counter() - start,
            )
        if progress is not None:
            progress(step, steps, value)
    return curve


@no_grad
def _in_batches(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    max_length: int,
    batch_size: int,
    output: Callable[[dict[str, torch.Tensor]], torch.Tensor],
) -> torch.Tensor:
    """`output(enc)` for every batch of `texts`, concatenated, with the model in eval mode."""
    import torch

    was_training = model.training
    model.eval()
    out = []
    for i in range(0, len(texts), batch_size):
        out.append(output(encode(tokenizer, texts[i : i + batch_size], max_length)))
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


def predict_logits(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    *,
    max_length: int = 64,
    batch_size: int = 64,
) -> torch.Tensor:
    """Logits of a sequence classifier for `texts`, in eval mode."""
    return _in_batches(
        model, tokenizer, texts, max_length, batch_size, lambda enc: model(**enc).logits.float()
    )


def embed(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    *,
    max_length: int = 64,
    batch_size: int = 64,
) -> torch.Tensor:
    """Mean-pooled, L2-normalised last hidden states (sentence-transformers' pooling)."""
    return _in_batches(
        model, tokenizer, texts, max_length, batch_size, lambda enc: pooled(model, enc)
    )


def pooled(model: torch.nn.Module, enc: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean pooling over non-padding tokens, normalised; works with grad too."""
    import torch

    encoder = getattr(model, "base_model", model)
    hidden = encoder(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
    return torch.nn.functional.normalize(mean.float(), dim=-1)


def accuracy(pred: Sequence[int], gold: Sequence[int]) -> float:
    """Fraction of equal entries.

    >>> accuracy([1, 0, 1], [1, 1, 1])
    0.6666666666666666
    """
    if not gold:
        return 0.0
    return sum(int(p == g) for p, g in zip(pred, gold, strict=True)) / len(gold)


def macro_f1(pred: Sequence[int], gold: Sequence[int], num_labels: int) -> float:
    """Unweighted mean of per-label F1 over labels that occur in `gold` or `pred`.

    >>> macro_f1([0, 1, 1], [0, 1, 0], 2)
    0.6666666666666666
    """
    scores = []
    for c in range(num_labels):
        tp = sum(1 for p, g in zip(pred, gold, strict=True) if p == c and g == c)
        fp = sum(1 for p, g in zip(pred, gold, strict=True) if p == c and g != c)
        fn = sum(1 for p, g in zip(pred, gold, strict=True) if p != c and g == c)
        if tp + fp + fn == 0:
            continue
        scores.append(2 * tp / (2 * tp + fp + fn))
    return sum(scores) / len(scores) if scores else 0.0


def classifier_metrics(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[Example],
    num_labels: int,
    *,
    max_length: int = 64,
    prefix: str = "val_",
) -> dict[str, float]:
    """Accuracy and macro-F1 of a classifier whose head ids equal the data's label ids."""
    if not examples:
        return {}
    logits = predict_logits(model, tokenizer, [e.text for e in examples], max_length=max_length)
    pred = logits.argmax(-1).tolist()
    gold = [e.label for e in examples]
    return {
        prefix + "accuracy": accuracy(pred, gold),
        prefix + "f1": macro_f1(pred, gold, num_labels),
    }
