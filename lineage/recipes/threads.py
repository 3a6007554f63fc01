"""The torch thread count of a derive: part of the determinism contract.

Float sums depend on how work is split across threads, so a derive uses a fixed
count (not "all cores"), recorded with every version. In a module of its own, without
torch: the cascade's host picks each step's count before any step (or torch) runs.
"""

from __future__ import annotations

import os

#: Threads used inside `derive`. Change it and training outputs change. Override with
#: LINEAGE_DERIVE_THREADS (at your own risk).
DERIVE_THREADS = int(os.environ.get("LINEAGE_DERIVE_THREADS", "2"))


def effective_threads(threads: int | None = None) -> int:
    """The thread count `deterministic(seed, threads)` uses (what provenance records)."""
    return threads or DERIVE_THREADS
