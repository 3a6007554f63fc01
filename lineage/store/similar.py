"""`find_similar`: which stored versions a model most likely derives from.

Compares tensor-content sketches (see `sketch`): O(sketch size) per candidate, and each
candidate's sketch is read from its manifest once per store object, so ranking thousands
of versions takes well under a second.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lineage.errors import StoreError
from lineage.store import sketch
from lineage.store.backend import ObjectStore
from lineage.store.dtypes import itemsize
from lineage.store.manifest import Manifest
from lineage.store.safetensors_format import read_layout
from lineage.store.sources import OpenSource, list_files


def sketch_of_dir(src: Path) -> list[int]:
    """The sketch of a model directory, without storing anything (reads only the
    sampled elements of each tensor, with ``pread``: a few kB per tensor)."""
    tokens: list[np.ndarray] = []
    for file in list_files(Path(src)):
        if not file.rel.endswith(".safetensors"):
            continue
        with OpenSource(file) as f:
            layout = read_layout(f)
            for slot in layout.tensors:
                size = itemsize(slot.dtype)
                positions = sketch.sample_positions(slot.nbytes // size)
                if positions is None:
                    continue
                offsets = [layout.data_start + slot.begin + int(p) * size for p in positions]
                sample = _read_scattered(f, offsets, size)
                tokens.append(sketch.sample_tokens(slot.name, slot.dtype, sample))
    return sketch.bottom_k(tokens)


#: sampled elements closer than this are read in one `pread` (a system call costs more
#: than copying a few kB).
COALESCE_BYTES = 64 << 10


def _read_scattered(f: OpenSource, offsets: list[int], size: int) -> bytes:
    """`size` bytes at each of the (ascending) offsets, concatenated."""
    out = bytearray()
    i = 0
    while i < len(offsets):
        j = i
        while j + 1 < len(offsets) and offsets[j + 1] - offsets[i] < COALESCE_BYTES:
            j += 1
        span = f.read(offsets[i], offsets[j] + size - offsets[i])
        for k in range(i, j + 1):
            at = offsets[k] - offsets[i]
            out += span[at : at + size]
        i = j + 1
    return bytes(out)


def find_similar(
    store: ObjectStore,
    manifest_or_dir: Manifest | Path | str,
    candidates: dict[str, str],
    limit: int = 5,
) -> list[tuple[str, float]]:
    """The `limit` most similar candidates (label -> manifest id), best first, with scores.

    Scores estimate the share of sampled tensor values the two versions have in common
    (1.0: same weights; a fine-tune scores high; unrelated models score ~0). Candidates
    with a score of 0 are left out.
    """
    if isinstance(manifest_or_dir, Manifest):
        mine = manifest_or_dir.sketch
    else:
        mine = sketch_of_dir(Path(manifest_or_dir))
    if not mine:
        return []
    scored = []
    for label, mid in candidates.items():
        theirs = store.sketches.get(mid)
        if theirs is None:
            try:
                theirs = store.sketches[mid] = store.get_manifest(mid).sketch
            except StoreError:
                continue  # a damaged manifest is no candidate (`store verify` reports it)
        score = sketch.similarity(mine, theirs)
        if score > 0:
            scored.append((label, round(score, 4)))
    scored.sort(key=lambda item: (-item[1], item[0]))
    return scored[:limit]
