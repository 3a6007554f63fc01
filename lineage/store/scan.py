"""Listing a weights folder: `list_files`, as `lineage.store.sources` defines it.

Kept as its own name for the callers that validate a source before anything else
(`lineage add`/`commit`); every rule (no links, no special files, no pickles, names a
manifest can hold) lives in `sources`.
"""

from __future__ import annotations

from lineage.store.sources import SKIP_DIRS, list_files, scan_source

__all__ = ["SKIP_DIRS", "list_files", "scan_source"]
