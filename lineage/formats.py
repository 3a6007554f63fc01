"""File formats lineage reads and refuses.

Weights come in and go out as safetensors. Pickle checkpoints can run arbitrary code
when loaded, so they are refused by name and never opened; the hint says how to
convert them once, on a machine that trusts them.
"""

from __future__ import annotations

#: Suffixes of pickled checkpoints (PyTorch, Lightning, plain pickle): never opened.
PICKLE_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle"})

CONVERT_HINT = (
    "convert it to safetensors first, e.g. in Python (only if you trust the file): "
    "model = AutoModel.from_pretrained(dir); model.save_pretrained(out, safe_serialization=True)"
)

#: Marker file of a lineage checkout: what it holds, and that lineage may replace it.
#: Never stored when a checkout is added back (`lineage.store.sources` skips it).
CHECKOUT_MARKER = ".lineage-checkout"

#: Bytes per element of every safetensors dtype lineage accepts (the store encodes their
#: bit patterns, so dtypes numpy cannot compute with, bf16 and fp8, still round-trip).
SAFETENSORS_DTYPE_SIZES: dict[str, int] = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}
