"""`prune`: magnitude pruning of the encoder's matrices, with the kept mask saved.

The smallest-magnitude `sparsity` fraction of each prunable weight (per tensor, or
across all of them with `scope="global"`) is set to zero. Prunable: 2-D float
`*.weight` tensors outside the embeddings and the classification head. The mask
of kept entries is written to `prune_mask.safetensors` (bool, same names), so a
later recipe or a reader can tell pruned zeros from trained ones.

With `recovery_steps > 0` the pruned classifier is fine-tuned on the data set and
the mask is re-applied after every step, so pruned weights stay zero.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from lineage.datasets import TextDataset
from lineage.errors import RecipeError
from lineage.recipes.base import DeriveResult, Recipe
from lineage.recipes.builtin.common import (
    OptimParams,
    finish_dir,
    train_classifier,
    validation_metrics,
)
from lineage.recipes.hf import (
    load_classifier,
    load_plain,
    load_tokenizer,
    require_encoder,
    save_model,
)
from lineage.recipes.training import TrainingProgress

if TYPE_CHECKING:
    import torch

MASK_FILE = "prune_mask.safetensors"


class PruneParams(OptimParams):
    sparsity: float = Field(0.5, gt=0, lt=1, description="fraction of prunable weights set to 0")
    scope: Literal["layer", "global"] = Field("layer", description="threshold per tensor or global")
    recovery_steps: int = Field(0, ge=0, le=100_000, description="fine-tune steps after pruning")


def prunable(name: str, tensor: torch.Tensor) -> bool:
    """Encoder matrices only: embeddings are lookups, the head is tiny and decisive."""
    return (
        name.endswith(".weight")
        and tensor.ndim == 2
        and tensor.is_floating_point()
        and "embeddings" not in name
        and not name.startswith("classifier.")
        and ".classifier." not in name
    )


def magnitude_masks(
    tensors: dict[str, torch.Tensor], sparsity: float, scope: str
) -> dict[str, torch.Tensor]:
    """Boolean keep-masks dropping the `sparsity` fraction of smallest |w|.

    Ties at the threshold are broken by position (a stable sort), so the mask is
    deterministic even when many weights share a magnitude.

    >>> import torch
    >>> m = magnitude_masks({"a.weight": torch.tensor([[1.0, -3.0], [0.5, 2.0]])}, 0.5, "layer")
    >>> m["a.weight"].tolist()
    [[False, True], [False, True]]
    """
    import torch

    names = sorted(n for n, t in tensors.items() if prunable(n, t))
    masks: dict[str, torch.Tensor] = {}
    if scope == "global":
        flat = torch.cat([tensors[n].detach().abs().float().flatten() for n in names])
        keep = _keep_flat(flat, sparsity)
        offset = 0
        for n in names:
            k = tensors[n].numel()
            masks[n] = keep[offset : offset + k].reshape(tensors[n].shape)
            offset += k
    else:
        for n in names:
            t = tensors[n].detach().abs().float()
            masks[n] = _keep_flat(t.flatten(), sparsity).reshape(t.shape)
    return masks


def _keep_flat(values: torch.Tensor, sparsity: float) -> torch.Tensor:
    import torch

    n_drop = round(values.numel() * sparsity)
    keep = torch.ones(values.numel(), dtype=torch.bool)
    if n_drop:
        order = torch.sort(values, stable=True).indices
        keep[order[:n_drop]] = False
    return keep


def run_prune(
    parents: list[Path],
    params: PruneParams,
    data: TextDataset | None,
    out_dir: Path,
    progress: TrainingProgress | None = None,
) -> DeriveResult:
    """Zero the smallest weights; optionally recover accuracy with masked fine-tuning."""
    import torch
    from safetensors.torch import save_file

    parent = parents[0]
    info = require_encoder(parent, "prune")
    if params.recovery_steps:
        if data is None:
            raise RecipeError("recipe 'prune': recovery_steps > 0 needs a data set")
        model = load_classifier(parent, data.labels, info=info)
    else:
        model = load_plain(parent, info)
    # Masks are keyed by the loaded model's parameter names, which is what
    # save_pretrained writes (a file's own prefixes may differ, e.g. MiniLM's).
    by_name = dict(model.named_parameters())
    masks = magnitude_masks({n: p.data for n, p in by_name.items()}, params.sparsity, params.scope)
    if not masks:
        raise RecipeError(f"recipe 'prune': parent {parent} has no prunable weights")

    def apply_masks() -> None:
        for n, m in masks.items():
            by_name[n].data.mul_(m.to(by_name[n].dtype))

    with torch.no_grad():
        apply_masks()
    curve: list[tuple[int, float]] = []
    metrics: dict[str, float] = {}
    if params.recovery_steps:
        assert data is not None
        tokenizer = load_tokenizer(parent)
        curve, metrics["train_seconds"] = train_classifier(
            model,
            tokenizer,
            data,
            params,
            steps=params.recovery_steps,
            label="prune-recovery",
            progress=progress,
            after_step=apply_masks,
        )
        metrics |= validation_metrics(model, tokenizer, data, params.max_length)
    total = sum(m.numel() for m in masks.values())
    kept = sum(int(m.sum()) for m in masks.values())
    metrics |= {"sparsity": 1 - kept / total, "pruned_weights": float(total - kept)}
    save_model(model, out_dir)
    save_file(
        {n: m.contiguous() for n, m in sorted(masks.items())},
        str(out_dir / MASK_FILE),
        metadata={"format": "pt"},
    )
    finish_dir(out_dir, parent)
    return DeriveResult(metrics=metrics, loss_curve=curve)


PRUNE = Recipe(
    id="prune",
    kind="prune",
    Params=PruneParams,
    run=run_prune,
    description="magnitude pruning with a kept mask and optional recovery fine-tune",
)
