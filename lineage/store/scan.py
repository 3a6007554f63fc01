"""Find the files of a model directory, refusing what must never be read.

Pickle checkpoints can run arbitrary code when loaded, so they are refused by name and
never opened; the message says how to convert them to safetensors.
"""

from __future__ import annotations

from pathlib import Path

from lineage.errors import WeightsError
from lineage.formats import CHECKOUT_MARKER, CONVERT_HINT, PICKLE_SUFFIXES

#: directories that are tool state, not part of a model.
SKIP_DIRS = frozenset({".git", ".cache", "__pycache__"})


def list_files(src: Path) -> list[tuple[str, Path]]:
    """(relative posix path, absolute path) for every file of `src`, sorted by path.

    `src` may be one ``.safetensors`` file. Raises `WeightsError` for a missing path, a
    pickle checkpoint, or a directory with no safetensors file.
    """
    if not src.exists():
        raise WeightsError(f"no such file or directory: {src}")
    if src.is_file():
        found = [(src.name, src)]
    else:
        found = []
        for path in sorted(src.rglob("*")):
            rel = path.relative_to(src)
            if any(part in SKIP_DIRS for part in rel.parts[:-1]) or not path.is_file():
                continue
            if rel.as_posix() == CHECKOUT_MARKER:  # lineage's own note, not model data
                continue
            found.append((rel.as_posix(), path))
    for rel, path in found:
        if path.suffix.lower() in PICKLE_SUFFIXES:
            raise WeightsError(
                f"refusing pickle checkpoint {rel} (never unpickled): {CONVERT_HINT}"
            )
    if not any(rel.endswith(".safetensors") for rel, _ in found):
        raise WeightsError(f"no weights in {src}: expected at least one .safetensors file")
    return found
