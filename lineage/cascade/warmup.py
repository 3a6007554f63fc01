"""Start early what a cascade's first node would otherwise wait for.

Prefect's import and its local server's start-up take seconds; so do a warm worker's
imports (torch, transformers, PEFT) and this process's own (tests and recipes' params
are checked here, and a derivable version's recipe is re-run here to verify it). All
of them can run at once: `warm_up` starts the workers (they import in their own
processes) and this process's imports in a thread, and returns at once. Calling it
again costs nothing.
"""

from __future__ import annotations

import importlib
import threading

#: What the derive and test tasks import on first use in the flow's process.
HOST_MODULES = (
    "lineage.ops.derive",
    "lineage.ops.add",
    "lineage.ops.tests",
    "lineage.modeltests",
    "lineage.recipes",
    "lineage.recipes.builtin",
    # What the first commit imports on first use (choosing delta bases).
    "lineage.store.bases",
    "lineage.store.similar",
    "numpy.ma",
    # What Prefect imports on first use when it creates the flow run (to serialize
    # its parameters) and calls the flow: a third of a second on its critical path.
    "fastapi.encoders",
    "prefect.utilities.visualization",
)

_started = threading.Event()


def preload_host(steps_here: bool) -> None:
    """Import what the tasks need here; torch too with `steps_here` (the inline
    runner). Otherwise this process only hands steps to workers and needs torch only
    to verify or re-make a derivable version (`preload_torch`): until then, its cores
    are the workers'."""
    for module in HOST_MODULES:
        importlib.import_module(module)
    if steps_here:
        _import_torch()


def _import_torch() -> None:
    # Only the import: entering `deterministic` here would change torch's global
    # settings under a step that runs in this process at the same time.
    importlib.import_module("lineage.recipes.determinism")


_torch_started = threading.Event()


def preload_torch() -> None:
    """Import torch here in the background (once): for a plan with derivable versions,
    which this process re-makes to verify them (`lineage.ops.derive.DERIVABLE_KINDS`)."""
    if not _torch_started.is_set():
        _torch_started.set()
        threading.Thread(target=_import_torch, name="lineage-torch", daemon=True).start()


def warm_up(
    runner: str,
    concurrency: int,
    *,
    warm: bool = True,
    host: bool = True,
    threads: int | None = None,
) -> None:
    """Start this process's warm workers for `runner` (if `warm` and it has them) and,
    with `host`, its own imports, in the background. (The CLI starts the workers before
    it imports Prefect, and this process's imports after: they would compete for it.)"""
    from lineage.steps.pool import POOLED_RUNNERS, pool_for

    if host and not _started.is_set():
        _started.set()
        threading.Thread(
            target=preload_host, args=(runner == "inline",), name="lineage-preload", daemon=True
        ).start()
    if warm and runner in POOLED_RUNNERS:
        pool_for(runner, concurrency, threads)
