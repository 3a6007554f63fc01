"""The int8 weight format written by the `quantize` recipe, and how to read it back.

Format (version 1), a normal HF directory whose `model.safetensors` holds:

- every tensor of the float model that is not quantized, unchanged;
- for each quantized 2-D weight `W` named `X.weight`: `X.weight_int8` (int8, same
  shape) and `X.weight_scale` (float32, one per output row), with
  `W ≈ X.weight_int8.float() * X.weight_scale[:, None]` (symmetric, per channel).

`config.json` carries `"lineage_quantization": {"format": "int8-per-channel", "version": 1,
"source_dtype": "float32"}`. This is the *stored* form: stock `from_pretrained` does
not know it. `lineage checkout` therefore writes it dequantized (float32 weights, exactly
what `dequantize_codes` gives) unless `--raw` asks for the stored form; see
`lineage.recipes.stock`. Load the stored form with
`lineage.recipes.hf.load_for_inference(dir)` or, by hand:

>>> import torch
>>> w = torch.tensor([[0.5, -1.0], [2.0, 0.0]])
>>> q = quantize_tensors({"l.weight": w})
>>> sorted(q)
['l.weight_int8', 'l.weight_scale']
>>> torch.allclose(dequantize_tensors(q)["l.weight"], w, atol=0.01)
True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

FORMAT = "int8-per-channel"
FORMAT_VERSION = 1
CONFIG_KEY = "lineage_quantization"
INT8_SUFFIX = ".weight_int8"
SCALE_SUFFIX = ".weight_scale"


def quantize_tensors(
    tensors: Mapping[str, torch.Tensor],
    should_quantize: Callable[[str, torch.Tensor], bool] | None = None,
) -> dict[str, torch.Tensor]:
    """Quantize the 2-D float `*.weight` tensors (or those `should_quantize` picks)."""
    import torch

    out: dict[str, torch.Tensor] = {}
    for name, t in tensors.items():
        pick = name.endswith(".weight") and t.ndim == 2 and t.is_floating_point()
        if should_quantize is not None:
            pick = pick and should_quantize(name, t)
        if not pick:
            out[name] = t
            continue
        w = t.detach().to(torch.float32)
        absmax = w.abs().amax(dim=1)
        # An all-zero row (pruned) gets scale 1 so it dequantizes to exact zeros.
        scale = torch.where(absmax > 0, absmax / 127.0, torch.ones_like(absmax))
        codes = torch.clamp(torch.round(w / scale[:, None]), -127, 127).to(torch.int8)
        stem = name.removesuffix(".weight")
        out[stem + INT8_SUFFIX] = codes.contiguous()
        out[stem + SCALE_SUFFIX] = scale.contiguous()
    return out


def dequantize_codes(codes: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The float32 weight that int8 `codes` and per-row `scale` stand for.

    The one place the format's arithmetic lives: the torch loader and the
    checkout-time conversion both call it, so they give the same bits.
    """
    if codes.ndim != 2 or scale.shape != (codes.shape[0],):
        raise ValueError(f"int8 codes {codes.shape} do not match scales {scale.shape}")
    return codes.astype(np.float32) * scale.astype(np.float32)[:, None]


def quantized_stem(name: str) -> str | None:
    """`X` for a tensor named `X.weight_int8`, else None."""
    return name.removesuffix(INT8_SUFFIX) if name.endswith(INT8_SUFFIX) else None


def dequantize_tensors(
    tensors: Mapping[str, torch.Tensor], dtype: torch.dtype | None = None
) -> dict[str, torch.Tensor]:
    """Invert `quantize_tensors` (up to rounding): int8 codes times scales."""
    import torch

    out: dict[str, torch.Tensor] = {}
    for name, t in tensors.items():
        if name.endswith(SCALE_SUFFIX):
            continue
        stem = quantized_stem(name)
        if stem is None:
            out[name] = t
            continue
        scale = tensors[stem + SCALE_SUFFIX]
        weight = torch.from_numpy(dequantize_codes(t.numpy(), scale.float().numpy()))
        out[stem + ".weight"] = weight.to(dtype or torch.float32)
    return out


def is_quantized_config(config: Mapping[str, object]) -> bool:
    """True if an HF `config.json` (as a dict) describes this int8 format."""
    q = config.get(CONFIG_KEY)
    return isinstance(q, dict) and q.get("format") == FORMAT
