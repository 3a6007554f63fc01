"""Bit-identical CPU results: seeds, deterministic kernels and a fixed thread count.

Float sums depend on how work is split across threads, so the thread count is
fixed (not "all cores"): the same derive gives the same bytes on a laptop and on a
16-core runner. Global torch settings are restored afterwards, so callers (the
CLI, a Prefect worker running several steps) are not left in a changed state.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from lineage.recipes.threads import effective_threads


def _use_deterministic_kernels(mode: bool, *, warn_only: bool = False) -> None:
    """`torch.use_deterministic_algorithms`, without its import of `torch._inductor`.

    That import (for the compiler's own deterministic flag) takes 1.3 s of a cold
    process here, on every CLI `add --recipe`, and recipes run eagerly: they never
    compile. The kernel flag is the same one torch sets; when the compiler is already
    loaded, its flag follows too, as with torch's function.
    """
    set_kernels = getattr(torch._C, "_set_deterministic_algorithms", None)
    if set_kernels is None:  # a torch without the private setter: the public call
        torch.use_deterministic_algorithms(mode, warn_only=warn_only)
        return
    inductor_config = sys.modules.get("torch._inductor.config")
    if inductor_config is not None:
        setattr(inductor_config, "deterministic", mode)  # noqa: B010  (a module found at run time)
    set_kernels(mode, warn_only=warn_only)


@contextmanager
def deterministic(seed: int, threads: int | None = None) -> Iterator[None]:
    """Seed python, numpy and torch; use deterministic kernels and fixed threads.

    >>> with deterministic(0):
    ...     a = torch.rand(2)
    >>> with deterministic(0):
    ...     b = torch.rand(2)
    >>> bool((a == b).all())
    True
    """
    prev_threads = torch.get_num_threads()
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    with torch.random.fork_rng(devices=[]):
        py_state, np_state = random.getstate(), np.random.get_state()
        try:
            torch.set_num_threads(effective_threads(threads))
            _use_deterministic_kernels(True)
            random.seed(seed)
            np.random.seed(seed % 2**32)
            torch.manual_seed(seed)
            yield
        finally:
            torch.set_num_threads(prev_threads)
            _use_deterministic_kernels(prev_det, warn_only=prev_warn)
            random.setstate(py_state)
            np.random.set_state(np_state)
