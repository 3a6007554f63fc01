"""A head start for a cascade's first steps.

A cascade's first nodes, those derived from the new upstream version and versions
known at plan time only, need nothing from Prefect to compute. Prefect's local
server takes seconds to start and the flow run more to begin, while the warm workers
are ready before that: `HeadStart` starts those nodes' derive steps on the pool as
soon as it can (`WorkerPool.run_early`), as many as the pool has slots, in the order
the flow will start them.

Only the step starts early; nothing is committed and nothing is recorded. When the
flow's derive task gets to the node, `rederive` asks the pool for the very same step
(same recipe, parameters, parent folders, data, tests and thread count: the spec
comes from `lineage.ops.derive.rederive_step`, the code `rederive` runs) and takes
the early run's result and output instead of running it again; its output lines go
to that task run's log then. A node found in the derive cache, or whose step differs
by the time the flow asks, is not affected: the flow runs what it runs without a
head start, and an early step nobody took is thrown away at the end.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from lineage.cascade import cache
from lineage.cascade.build import build_plan
from lineage.cascade.node import node_tests

if TYPE_CHECKING:
    from lineage.cascade.plan import CascadePlan, PlanNode
    from lineage.steps.pool import WorkerPool
    from lineage.workspace import Workspace

log = logging.getLogger(__name__)


#: `0` turns head starts off (to compare, or to rule them out when debugging).
ENV = "LINEAGE_HEAD_START"


def enabled() -> bool:
    """Whether cascades give their first steps a head start (`$LINEAGE_HEAD_START`)."""
    return os.environ.get(ENV, "1") != "0"


def first_nodes(plan: CascadePlan, slots: int) -> list[PlanNode]:
    """The nodes the flow starts first: those waiting for no other node of the plan,
    highest priority first (then plan order), at most `slots` of them."""
    priority = plan.priorities()
    ready = [node for node in plan.to_derive if not node.plan_parents]
    ready.sort(key=lambda node: -priority[node.model])  # stable: plan order on ties
    return ready[:slots]


class HeadStart:
    """Start the first nodes' steps on `pool` in the background (see the module
    docstring); `close` forgets what nobody took and removes its folders."""

    def __init__(
        self,
        open_workspace: Callable[[], Workspace],
        upstream: str,
        replaces: str | None,
        pool: WorkerPool,
    ) -> None:
        self.pool = pool
        self.started: list[str] = []  # models whose step was started early
        self._work = Path(tempfile.mkdtemp(prefix="lineage-head-start-"))
        self._thread = threading.Thread(
            target=self._start,
            args=(open_workspace, upstream, replaces),
            name="lineage-head-start",
            daemon=True,
        )
        self._thread.start()

    def _start(
        self, open_workspace: Callable[[], Workspace], upstream: str, replaces: str | None
    ) -> None:
        from lineage.ops.derive import rederive_step

        try:
            workspace = open_workspace()
            plan = build_plan(workspace, upstream, replaces)
            priority = plan.priorities()
            for node in first_nodes(plan, self.slots()):
                parent_refs = node.parent_refs({})
                if cache.find_derived(workspace, node, parent_refs) is not None:
                    continue  # the flow finds it done: no step
                tests = node_tests(workspace, node.model, parent_refs)
                spec = rederive_step(
                    workspace, node.old_ref, parent_refs, self._work / node.model, tests=tests
                )
                if self.pool.run_early(spec, priority=priority[node.model]):
                    self.started.append(node.model)
        except Exception as exc:  # the flow plans and derives anyway, and reports it
            log.debug("no head start: %s", exc)

    def wait(self, timeout_s: float | None = None) -> list[str]:
        """Wait until the steps are started (or it gave up); the models started."""
        self._thread.join(timeout_s)
        return list(self.started)

    def slots(self) -> int:
        """How many steps to start early: one per slot, but leave a core to Prefect's
        server, which starts at the same time (with one core less it is later ready,
        and with it the flow)."""
        return max(1, min(self.pool.slots, (os.cpu_count() or 1) - 1))

    def close(self) -> None:
        """Forget the early steps the flow did not take (it failed, or found a node
        done) and remove the folders, at once or, for steps still running, when they
        end: the caller does not wait for work nobody wants."""
        self._thread.join()
        running = [early for early in self.pool.forget_early(self._work) if not early.done.is_set()]
        if not running:
            shutil.rmtree(self._work, ignore_errors=True)
            return

        def remove_when_done() -> None:
            for early in running:
                early.done.wait()
            shutil.rmtree(self._work, ignore_errors=True)

        threading.Thread(target=remove_when_done, name="head-start-cleanup", daemon=True).start()
