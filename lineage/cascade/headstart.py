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

`ChildHeadStarts` does the same inside the flow for a node's children: a child needs
its parent's files, not its parent's commit, so when a node's step is done (and its
tests passed) the children it alone holds back start their steps on the folder the
step wrote (`ops.parents.settle_output`) while the node is committed and gated; the
child's derive task takes the result later. A child blocked by a failed gate never
asks: its early step is thrown away.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from lineage.cascade import cache
from lineage.cascade.build import build_plan
from lineage.cascade.node import node_tests
from lineage.config import switched_on

if TYPE_CHECKING:
    from lineage.cascade.plan import CascadePlan, PlanNode
    from lineage.steps.pool import WorkerPool
    from lineage.workspace import Workspace

log = logging.getLogger(__name__)


#: `0` turns head starts off (to compare, or to rule them out when debugging).
ENV = "LINEAGE_HEAD_START"


def enabled() -> bool:
    """Whether cascades give their first steps a head start (`$LINEAGE_HEAD_START`)."""
    return switched_on(ENV)


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
        done) and remove their folders (`_forget`)."""
        self._thread.join()
        _forget(self.pool, self._work)


def _forget(pool: WorkerPool, work: Path) -> None:
    """Forget the early steps under `work` that nobody took and remove `work`, at once
    or, with steps still running, when they end: nobody waits for work nobody wants."""
    running = [early for early in pool.forget_early(work) if not early.done.is_set()]
    if not running:
        shutil.rmtree(work, ignore_errors=True)
        return

    def remove_when_done() -> None:
        for early in running:
            early.done.wait()
        shutil.rmtree(work, ignore_errors=True)

    threading.Thread(target=remove_when_done, name="head-start-cleanup", daemon=True).start()


class ChildHeadStarts:
    """Start children's steps when their parent's step is done (see the module
    docstring); `close` forgets what nobody took and removes its folders."""

    def __init__(
        self, open_workspace: Callable[[], Workspace], plan: CascadePlan, pool: WorkerPool
    ) -> None:
        self.pool = pool
        self.started: list[str] = []  # children whose step was started early
        self._open_workspace = open_workspace
        self._nodes = {node.model: node for node in plan.to_derive}
        self._children = plan.children()
        self._priority = plan.priorities()
        self._work = Path(tempfile.mkdtemp(prefix="lineage-child-starts-"))
        self._lock = threading.Lock()
        self._closed = False  # by `close`: a hook called later starts nothing

    def hook(self, model: str) -> Callable[[Path], None] | None:
        """What `rederive(on_step_done=...)` of `model` calls with its step's folder:
        None when no child waits for `model` alone (a merge of two re-derived nodes
        waits for both commits)."""
        children = [
            child
            for child in self._children.get(model, [])
            if self._nodes[child].plan_parents == [model]
        ]
        if not children:
            return None
        return functools.partial(self._start_in_background, model, children)

    def _start_in_background(self, model: str, children: list[str], folder: Path) -> None:
        # The parent's commit goes on at once; the children's specs read the graph.
        threading.Thread(
            target=self._start,
            args=(model, children, folder),
            name="lineage-child-starts",
            daemon=True,
        ).start()

    def _start(self, model: str, children: list[str], folder: Path) -> None:
        from lineage.ops.derive import rederive_step_on
        from lineage.ops.parents import checkout_parent

        placeholder = f"\0{model}"  # where the parent's new version goes in the order
        for child in sorted(children, key=lambda c: -self._priority[c]):
            node = self._nodes[child]
            try:
                workspace = self._open_workspace()
                refs = node.parent_refs({model: placeholder})
                folders = [
                    folder
                    if ref == placeholder
                    else checkout_parent(workspace, ref, self._work / child / f"parent-{i}")
                    for i, ref in enumerate(refs)
                ]
                # The tests that apply along the version it replaces: the same models
                # (and declarations) as along the new parent, which is not committed yet.
                old_parents = node.parent_refs({model: self._nodes[model].old_ref})
                spec = rederive_step_on(
                    workspace,
                    node.old_ref,
                    folders,
                    self._work / child,
                    tests=node_tests(workspace, child, old_parents),
                )
                with self._lock:  # atomic with `close`: each step started is forgotten
                    if self._closed:
                        return
                    if self.pool.run_early(spec, priority=self._priority[child], anytime=True):
                        self.started.append(child)
            except Exception as exc:  # its derive task runs the step itself
                log.debug("no head start for %s: %s", child, exc)

    def close(self) -> None:
        """Forget the children's early steps nobody took (a failed gate blocked them,
        or they were found done) and remove their folders (`_forget`); start no more."""
        with self._lock:
            self._closed = True
        _forget(self.pool, self._work)


_active: ChildHeadStarts | None = None


@contextmanager
def child_head_starts(
    open_workspace: Callable[[], Workspace], plan: CascadePlan, pool: WorkerPool | None
) -> Iterator[None]:
    """Inside, the derive tasks of this process start their children's steps early
    (`children_starter`); with no pool, or head starts off, nothing changes."""
    global _active
    if pool is None or not enabled():
        yield
        return
    starts = ChildHeadStarts(open_workspace, plan, pool)
    _active = starts
    try:
        yield
    finally:
        _active = None
        starts.close()


def children_starter(model: str) -> Callable[[Path], None] | None:
    """For `rederive(on_step_done=...)` of `model` inside `child_head_starts`."""
    active = _active
    return None if active is None else active.hook(model)
