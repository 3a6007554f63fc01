"""Tensor-content sketches: a few hundred integers that say which models are alike.

Each float tensor contributes tokens built from values sampled at fixed positions,
coarsely quantized (sign, exponent and 4 mantissa bits of the value as float32) and
mixed with the tensor's role name. A fine-tune keeps most such tokens; an unrelated
model shares almost none. A version's sketch is the bottom-k of its token hashes, so
comparing two versions costs O(k) whatever their size, and the Jaccard similarity of
their token sets is estimated from the sketches alone.
"""

from __future__ import annotations

import functools
import hashlib

import numpy as np

from lineage.store.dtypes import FLOATS, itemsize, to_float64, uint_type
from lineage.store.matching import normalize

SAMPLES_PER_TENSOR = 32
SKETCH_SIZE = 256
_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)
_STEPS = np.arange(SAMPLES_PER_TENSOR, dtype=np.int64)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: spreads similar integers over the whole 64-bit range."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        out: np.ndarray = x ^ (x >> np.uint64(31))
        return out


@functools.lru_cache(maxsize=4096)
def _name_keys(name: str) -> np.ndarray:
    """Per-sample keys of a tensor role name (the same for every version: cached)."""
    seed = int.from_bytes(
        hashlib.blake2b(normalize(name).encode(), digest_size=8).digest(), "little"
    )
    with np.errstate(over="ignore"):
        keys = np.uint64(seed) + np.arange(SAMPLES_PER_TENSOR, dtype=np.uint64) * np.uint64(
            0x9E3779B97F4A7C15
        )
    keys.flags.writeable = False
    return keys


def sample_positions(n: int) -> np.ndarray | None:
    """The element positions a tensor of `n` elements is sampled at (None: too small)."""
    if n < SAMPLES_PER_TENSOR:
        return None
    return (_STEPS * n) // SAMPLES_PER_TENSOR


def tensor_tokens(name: str, dtype: str, raw: np.ndarray) -> np.ndarray:
    """Token hashes (uint64) for one tensor's raw bytes; empty for non-float or tiny tensors."""
    if dtype not in FLOATS:
        return np.empty(0, np.uint64)
    bits = np.frombuffer(raw, dtype=uint_type(itemsize(dtype)))
    positions = sample_positions(bits.size)
    if positions is None:
        return np.empty(0, np.uint64)
    return sample_tokens(name, dtype, bits[positions])


def sample_tokens(name: str, dtype: str, sample: np.ndarray | bytes | bytearray) -> np.ndarray:
    """Token hashes from the sampled elements' bytes (see `sample_positions`)."""
    if dtype not in FLOATS:
        return np.empty(0, np.uint64)
    bits = np.frombuffer(sample, dtype=uint_type(itemsize(dtype)))
    values = to_float64(bits, dtype).astype(np.float32).view(np.uint32)
    coarse = (values >> np.uint32(19)).astype(np.uint64)
    with np.errstate(over="ignore"):
        return _mix(_name_keys(name) ^ (coarse * np.uint64(0xD6E8FEB86659FD93)))


def bottom_k(tokens: list[np.ndarray], k: int = SKETCH_SIZE) -> list[int]:
    """The k smallest distinct token hashes, as Python ints (JSON-friendly)."""
    if not tokens:
        return []
    everything = np.unique(np.concatenate(tokens))
    return [int(v) for v in everything[:k]]


def similarity(a: list[int] | np.ndarray, b: list[int] | np.ndarray, k: int = SKETCH_SIZE) -> float:
    """Estimated Jaccard similarity of the token sets behind two bottom-k sketches."""
    sa, sb = np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64)
    if sa.size == 0 or sb.size == 0:
        return 0.0
    union = np.union1d(sa, sb)[:k]
    both = np.intersect1d(sa, sb, assume_unique=True)
    return float(np.isin(union, both, assume_unique=True).sum()) / float(union.size)
