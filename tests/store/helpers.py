"""Small helpers shared by the store tests."""

from __future__ import annotations

import contextlib
import json
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from lineage.store import groups, planes
from lineage.testing import same_model_files as same_tree

__all__ = ["same_tree"]


def write_safetensors(
    path: Path, tensors: dict[str, tuple[str, tuple[int, ...], bytes]], pad: int = 0
) -> Path:
    """Write a safetensors file by hand (any dtype, bf16 included)."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {
            "dtype": dtype,
            "shape": list(shape),
            "data_offsets": [offset, offset + len(data)],
        }
        offset += len(data)
    text = json.dumps(header).encode() + b" " * pad
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for _, _, data in tensors.values():
            f.write(data)
    return path


def f32(values: np.ndarray) -> tuple[str, tuple[int, ...], bytes]:
    """A float32 tensor entry for `write_safetensors`."""
    arr = np.ascontiguousarray(values, dtype=np.float32)
    return ("F32", arr.shape, arr.tobytes())


def base_and_fine_tune(root: Path, *, layers: int, seed: int) -> tuple[Path, Path]:
    """Folders `root/base` (`layers` random float32 weights) and `root/tuned` (each
    weight moved by about 1e-4, as a few optimizer steps do)."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    base = {f"l.{i}.weight": rng.standard_normal(1 << 16).astype(np.float32) for i in range(layers)}
    tuned = {
        k: v + (1e-4 * rng.standard_normal(v.size)).astype(np.float32) for k, v in base.items()
    }
    for name, tensors in (("base", base), ("tuned", tuned)):
        (root / name).mkdir()
        save_file(tensors, str(root / name / "model.safetensors"))
    return root / "base", root / "tuned"


@contextlib.contextmanager
def kernels(use_c: bool) -> Iterator[None]:
    """Run the store's byte-plane and exponent-group code with its C kernels (as
    loaded: none where the extension is not built) or with the numpy fallback."""
    saved = planes._kernels, groups._kernels
    if not use_c:
        planes._kernels = groups._kernels = None  # type: ignore[assignment]
    try:
        yield
    finally:
        planes._kernels, groups._kernels = saved
