"""Exponent groups: the ``gsub`` encoding's reordering of a float delta.

A fine-tune moves every weight by about the same *amount*, but the zigzag difference
``sub`` codes is counted in units of the last place of the base weight, which halves
with every step down in exponent: a small weight's residual is many bits wider than a
large one's. Byte planes over the tensor in its own order mix those widths, so every
plane's entropy coder sees a blend of distributions. ``gsub`` codes each chunk's
elements in groups of the same base exponent (adjacent exponents merged until a group
holds `MIN_GROUP` elements), each group as its own planes, in order within the group.
The grouping is a function of the base alone, so a reader recomputes it and no
permutation is stored; only the exponent cuts and each group's size are (checked
against the base on decode). Measured on MiniLM fine-tunes: 5-15 % smaller than
``sub`` in fp32, 15-30 % in bf16.

A chunk's first `HEAD` elements are coded as plain ``sub``, ungrouped: they are where
ingest samples a stored tensor to score it as a delta base (`codec.sample_picks`), and
there a window decodes from a prefix of a few planes (`lineage.store.windows`) instead
of from every group.

A chunk's table: ``{"head": n, "head_planes": planes, "cuts": [...], "groups": [[n,
planes], ...]}``; ``cuts`` and ``groups`` are empty when the head is the whole chunk.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import numpy as np

from lineage.store import planes
from lineage.store.objects import Part

try:  # one pass each way in C; the numpy code below computes the same bytes
    import lineage.store._planes as _kernels
except ImportError:
    _kernels = None  # type: ignore[assignment]

#: adjacent exponents are merged into one group until it holds this many elements: each
#: group costs a few bytes of table and one zstd frame per plane.
MIN_GROUP = 4096
#: elements at a chunk's start coded ungrouped: the sample windows (3 x 2048 elements
#: for a small tensor, 2048 at a chunk start for a large one) lie inside.
HEAD = 6144

#: bit position and width of the exponent field of each float dtype.
_EXPONENT = {"F32": (23, 8), "BF16": (7, 8), "F16": (10, 5), "F64": (52, 11)}


def applies(dtype: str) -> bool:
    """Whether a tensor of `dtype` can be coded in exponent groups."""
    return dtype in _EXPONENT


def exponents(bits: np.ndarray, dtype: str) -> np.ndarray:
    """The biased exponent field of each element (sign dropped), as small integers."""
    shift, width = _EXPONENT[dtype]
    field = np.right_shift(bits, bits.dtype.type(shift))
    np.bitwise_and(field, bits.dtype.type((1 << width) - 1), out=field)
    small: np.ndarray = field.astype(np.uint8 if width <= 8 else np.uint16)
    return small


def cuts_for(hist: np.ndarray, min_group: int = MIN_GROUP) -> list[int]:
    """Group boundaries for elements whose exponent field values have histogram `hist`,
    descending: group i holds the exponents in ``[cuts[i], cuts[i - 1])``; the last cut
    is 0, so every exponent has a group, and every group has at least one element."""
    cuts: list[int] = []
    held = 0
    for exponent in np.flatnonzero(hist)[::-1].tolist():
        held += int(hist[exponent])
        if held >= min_group:
            cuts.append(exponent)
            held = 0
    if cuts:
        cuts[-1] = 0  # a short remainder joins the last group
    else:
        cuts = [0]
    return cuts


#: grouping is used when a sample says it saves at least this many bits per element
#: (estimated 0.1-1.3 bits, median per model, on MiniLM derivatives, where it saves
#: 0.2-2.4; 0.003 on a delta of one or two last-place steps everywhere, where it saves
#: nothing and costs time).
MIN_GAIN_BITS = 0.02


def sample_gain(cur: np.ndarray, pred: np.ndarray, dtype: str) -> float:
    """Estimated bits per element grouping saves over plain ``sub``, from a sample:
    how much knowing the base's exponent tells about the residual's bit length
    (H(length) - H(length | exponent)); the bits below the leading one cost the same
    either way."""
    if not applies(dtype) or not cur.size:
        return 0.0
    signed = np.subtract(cur, pred).view(f"i{cur.itemsize}").astype(np.float64)
    length = np.zeros(cur.size, dtype=np.int64)
    moved = signed != 0
    length[moved] = np.frexp(np.abs(signed[moved]))[1]  # bit length of |difference|
    joint = exponents(pred, dtype).astype(np.int64) * 128 + length
    return _entropy(length) + _entropy(joint // 128) - _entropy(joint)


def _entropy(values: np.ndarray) -> float:
    """Empirical entropy of `values`, in bits."""
    _, counts = np.unique(values, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def check_table(table: object, count: int, dtype: str) -> tuple[int, list[int], list[int]]:
    """A grouped chunk's table from an object header, validated against its element
    count: (head, cuts, group sizes); ValueError otherwise. The planes are checked by
    the caller (`objects.check_tensor_header`, `planes.decode_chunk`)."""
    if not isinstance(table, dict):
        raise ValueError("a gsub chunk without exponent groups")
    head, cuts, tables = table.get("head"), table.get("cuts"), table.get("groups")
    top = 1 << _EXPONENT[dtype][1]
    if (
        type(head) is not int
        or not 1 <= head <= count
        or not isinstance(table.get("head_planes"), list)
        or not isinstance(cuts, list)
        or not isinstance(tables, list)
        or len(cuts) != len(tables)
        or not all(type(c) is int and 0 <= c < top for c in cuts)
        or any(a <= b for a, b in pairwise(cuts))
        or (cuts and cuts[-1] != 0)
        or (not cuts and head != count)
        or not all(isinstance(t, list) and len(t) == 2 for t in tables)
    ):
        raise ValueError("malformed exponent groups")
    sizes = [n for n, _ in tables]
    if not all(type(n) is int and n > 0 for n in sizes) or head + sum(sizes) != count:
        raise ValueError("exponent groups do not cover the chunk")
    return head, cuts, sizes


def _histogram(pred: np.ndarray, dtype: str) -> np.ndarray:
    """How many elements of `pred` have each exponent field value."""
    shift, width = _EXPONENT[dtype]
    if _kernels is not None:
        hist = np.zeros(1 << width, dtype=np.int64)
        _kernels.exponent_histogram(pred, pred.itemsize, shift, hist)
        return hist
    return np.bincount(exponents(pred, dtype), minlength=1 << width)


def _lut(cuts: list[int], dtype: str) -> np.ndarray:
    """Group index of every exponent field value."""
    lut = np.empty(1 << _EXPONENT[dtype][1], dtype=np.uint16)
    upper = lut.size
    for index, cut in enumerate(cuts):
        lut[cut:upper] = index
        upper = cut
    return lut


def _sizes(hist: np.ndarray, cuts: list[int]) -> list[int]:
    """Elements per group, from the exponent histogram."""
    upper = hist.size
    sizes = []
    for cut in cuts:
        sizes.append(int(hist[cut:upper].sum()))
        upper = cut
    return sizes


def _bounds(sizes: list[int]) -> np.ndarray:
    """Where each group starts in group order (and, last, the element count)."""
    return np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).astype(np.int64)


def _order(bits: np.ndarray, cuts: list[int], dtype: str) -> np.ndarray:
    """The stable order that puts elements (`bits`: their base) group by group."""
    return np.argsort(_lut(cuts, dtype)[exponents(bits, dtype)], kind="stable")  # radix


def encode(
    cur: np.ndarray, pred: np.ndarray, dtype: str, min_group: int = MIN_GROUP
) -> tuple[dict[str, Any], list[Part]]:
    """One chunk's table and payload parts (see the module docstring)."""
    if not applies(dtype):
        raise ValueError(f"gsub codes float tensors, not {dtype or 'untyped'} ones")
    head = min(HEAD, cur.size)
    head_table, parts = planes.encode_chunk(cur[:head], pred[:head], "sub")
    table: dict[str, Any] = {"head": head, "head_planes": head_table, "cuts": [], "groups": []}
    cur, pred = cur[head:], pred[head:]
    if not cur.size:
        return table, parts
    hist = _histogram(pred, dtype)
    cuts = cuts_for(hist, min_group)
    bounds = _bounds(_sizes(hist, cuts))
    if _kernels is not None:
        split = np.empty((cur.itemsize, cur.size), dtype=np.uint8)
        shift = _EXPONENT[dtype][0]
        _kernels.group_split(cur, pred, split, cur.itemsize, shift, _lut(cuts, dtype), bounds)
    else:
        order = _order(pred, cuts, dtype)
        split = planes.split(cur[order], pred[order], "sub")
    table["cuts"] = cuts
    for start, stop in pairwise(bounds.tolist()):
        group_table, group_parts = planes.encode_planes(split[:, start:stop])
        table["groups"].append([stop - start, group_table])
        parts.extend(group_parts)
    return table, parts


def payload_size(table: dict[str, Any]) -> int:
    """Payload bytes a grouped chunk's table accounts for."""
    head = planes.encoded_size(table["head_planes"])
    return head + sum(planes.encoded_size(t) for _, t in table["groups"])


def decode(
    table: dict[str, Any],
    payload: memoryview,
    count: int,
    out: np.ndarray,
    pred: np.ndarray,
    dtype: str,
) -> None:
    """Decode one grouped chunk of `count` elements into `out`, against `pred`."""
    head, cuts, sizes = check_table(table, count, dtype)
    at = planes.encoded_size(table["head_planes"])
    planes.decode_chunk(table["head_planes"], payload[:at], head, out[:head], pred[:head], True)
    out, pred = out[head:], pred[head:]
    if not sizes:
        return
    bounds = _bounds(sizes)
    split = np.empty((out.itemsize, count - head), dtype=np.uint8)
    for (start, stop), (_, group_table) in zip(
        pairwise(bounds.tolist()), table["groups"], strict=True
    ):
        length = planes.encoded_size(group_table)
        planes.decode_planes(group_table, payload[at : at + length], split[:, start:stop])
        at += length
    if _kernels is not None:
        shift = _EXPONENT[dtype][0]
        _kernels.group_merge(out, split, pred, out.itemsize, shift, _lut(cuts, dtype), bounds)
        return
    if _sizes(_histogram(pred, dtype), cuts) != sizes:
        raise ValueError("exponent groups do not match the base")
    order = _order(pred, cuts, dtype)
    decoded = np.empty(count - head, dtype=out.dtype)
    planes.merge(decoded, list(split), pred[order], add=True)
    out[order] = decoded
