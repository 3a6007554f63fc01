"""`quantize`: int8 weights with per-channel scales, or a plain fp16/bf16 cast.

Works on the safetensors tensors directly, so any architecture with a single
`model.safetensors` is accepted (no training, no transformers model needed).

- `dtype="int8"`: every 2-D float `*.weight` (Linear and, if `embeddings=true`,
  embedding matrices) becomes int8 codes plus float32 scales, in the format of
  `lineage.recipes.int8` (load with `lineage.recipes.hf.load_for_inference`).
  That is the stored form; `lineage checkout` writes it dequantized to float32 so
  stock `from_pretrained` loads it (`--raw` keeps the stored form).
  Biases and LayerNorms stay in float: they are tiny and sensitive.
- `dtype="float16"|"bfloat16"`: every float tensor is cast; the result is a normal
  HF directory (`from_pretrained` loads it) with `torch_dtype` set accordingly.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from lineage.datasets import TextDataset
from lineage.errors import RecipeError, WeightsError
from lineage.recipes.base import DeriveResult, Recipe, RecipeParams
from lineage.recipes.hf import WEIGHTS_FILE, inspect_model, write_json
from lineage.recipes.int8 import CONFIG_KEY, FORMAT, FORMAT_VERSION, quantize_tensors
from lineage.recipes.training import TrainingProgress

if TYPE_CHECKING:
    import torch


class QuantizeParams(RecipeParams):
    dtype: Literal["int8", "float16", "bfloat16"] = Field("int8", description="target format")
    embeddings: bool = Field(True, description="int8 only: quantize embedding matrices too")
    min_numel: int = Field(1024, ge=0, description="int8 only: leave smaller matrices in float")


def _copy_side_files(parent: Path, out_dir: Path) -> None:
    for f in sorted(parent.iterdir()):
        if (
            f.is_file()
            and f.name not in (WEIGHTS_FILE, "config.json")
            and not f.name.startswith(".")
        ):
            (out_dir / f.name).write_bytes(f.read_bytes())


def run_quantize(
    parents: list[Path],
    params: QuantizeParams,
    data: TextDataset | None,
    out_dir: Path,
    progress: TrainingProgress | None = None,
) -> DeriveResult:
    """Write the parent's weights in a smaller number format."""
    import torch
    from safetensors.torch import load_file, save_file

    parent = parents[0]
    try:
        info = inspect_model(parent)
    except WeightsError as exc:
        raise RecipeError(f"recipe 'quantize': parent {exc}") from None
    if info.layout != "model":
        raise RecipeError(
            f"recipe 'quantize' cannot use parent {parent}: it is a {info.layout} directory "
            "(quantize a float model)"
        )
    tensors = load_file(str(parent / WEIGHTS_FILE))
    config = dict(info.config)
    before = sum(t.numel() * t.element_size() for t in tensors.values())
    if params.dtype == "int8":

        def pick(name: str, t: torch.Tensor) -> bool:
            if t.numel() < params.min_numel:
                return False
            return params.embeddings or "embeddings" not in name

        out = quantize_tensors(tensors, pick)
        config[CONFIG_KEY] = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "source_dtype": str(next(iter(tensors.values())).dtype).removeprefix("torch."),
        }
        metadata = {"format": "pt"}  # one key: safetensors writes a map in hash order
    else:
        dtype = getattr(torch, params.dtype)
        out = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in tensors.items()}
        config["torch_dtype"] = params.dtype
        config["dtype"] = params.dtype
        metadata = {"format": "pt"}
    out = {k: v.contiguous() for k, v in sorted(out.items())}
    save_file(out, str(out_dir / WEIGHTS_FILE), metadata=metadata)
    write_json(out_dir / "config.json", config)
    _copy_side_files(parent, out_dir)
    after = sum(t.numel() * t.element_size() for t in out.values())
    if progress is not None:
        progress(1, 1, 0.0)
    quantized = sum(1 for k in out if k.endswith(".weight_int8"))
    return DeriveResult(
        metrics={
            "bytes_before": float(before),
            "bytes_after": float(after),
            "compression": before / after if after else 0.0,
            "quantized_tensors": float(quantized),
        }
    )


QUANTIZE = Recipe(
    id="quantize",
    kind="quantize",
    Params=QuantizeParams,
    run=run_quantize,
    description="int8 per-channel weights with scales, or fp16/bf16 cast",
)
