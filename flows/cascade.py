"""The update cascade as a Prefect flow.

`cascade_flow(upstream="base@2")` plans the cascade (`lineage.cascade`), then
walks it: each node is a derive task (which also runs the node's tests) and a gate
task; a node starts as soon as every parent it waits for has passed (not level by
level), at most `concurrency` nodes at a time, the one with the longest estimated work
below it first (what the versions being replaced took: `CascadePlan.priorities`). A
node that fails (its derive raised after retries, or its tests failed) blocks exactly
its subtree; independent branches go on.

A node's tests run in its derive step, on the model the step just made (in the warm
worker that made it); only a node found in the derive cache gets a separate test task.
Steps run on warm workers (`lineage.steps.pool`: one subprocess or container per
slot, started while Prefect starts) unless `warm=False`, each with a fixed thread
count that keeps `concurrency` steps from oversubscribing the cores.

The flow logs the plan once and one line per node event. Progress shows in the
Prefect UI as a progress artifact updated per finished node; at the end a table
artifact summarises every node (its parents, tests and outcome), a markdown artifact
shows the same as a report the open-source UI renders (parents linked into
`lineage ui` when `$LINEAGE_UI_URL` is set), and a link artifact points at the lineage
graph (the UI, or an HTML file written into the workspace). A failed node emits the
Prefect event `lineage.cascade.node.failed`, for automations.

Run it without a server (`lineage cascade base@2`: a local Prefect server is started
once per process, and its start-up time reported; `lineage server start` keeps one
running for repeated use) or as a deployment triggered by `lineage.model.committed`
(see `deployments.yaml`).

Tasks run on a thread pool in the flow's process by default, or on a Dask cluster
(`task_runner="dask"`: a local multi-process cluster, or an existing scheduler by
address). Tasks receive only plain values (the workspace *path*, the plan node,
refs) and re-open the workspace where they run, so any worker that sees the
workspace at the same path (and its database) can run them.
"""

from __future__ import annotations

import contextlib
import contextvars
import heapq
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from prefect import flow, get_run_logger
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from lineage.cascade.build import build_plan
from lineage.cascade.headstart import HeadStart, child_head_starts
from lineage.cascade.headstart import enabled as head_starts_enabled
from lineage.cascade.history import record_cascade_run
from lineage.cascade.node import DeriveOutcome, NodeTests
from lineage.cascade.plan import CascadePlan, PlanNode
from lineage.cascade.settings import dask_workers_default, resolve_task_runner
from lineage.cascade.warmup import preload_torch, warm_up
from lineage.ops.derive import DERIVABLE_KINDS
from lineage.ops.parents import prefetch_parent, shared_parent_checkouts
from lineage.ops.promote import GateOutcome
from lineage.render.plan import describe_plan, node_tests_label
from lineage.steps.pool import (
    POOLED_RUNNERS,
    WorkerPool,
    close_shared_pools,
    pool_for,
    step_threads,
)
from lineage.tracking.prefect_server import STARTUP_TIMEOUT_S, LocalPrefectServer
from tasks.common import Timed, open_workspace
from tasks.derive import announced_as, derive_task
from tasks.gate import gate_task
from tasks.test import test_task

# Final node statuses, as shown in the summary table and returned by the flow.
PROMOTED, CANDIDATE, FAILED = "promoted", "candidate", "failed"
BLOCKED, SKIPPED = "blocked", "skipped"
FINAL = (PROMOTED, CANDIDATE, FAILED, BLOCKED)

#: Listener for node events in this process (the CLI prints progress lines with it).
NodeListener = Callable[[str, dict[str, Any]], None]
_listeners: list[NodeListener] = []


@contextmanager
def listening(listener: NodeListener) -> Iterator[None]:
    """Call `listener(event, node_summary)` for every node event of cascades run in
    this process ("plan", "start", "derived", "tested", "done"); for progress output."""
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)


def _notify(event: str, summary: dict[str, Any]) -> None:
    for listener in list(_listeners):
        listener(event, summary)


def build_task_runner(
    kind: str | None = None, *, dask_address: str | None = None, dask_workers: int | None = None
) -> TaskRunner[Any]:
    """The Prefect task runner for the cascade's tasks.

    `thread`: a pool in this process (the scheduler, not the pool, limits how many
    nodes run at once, so the pool only has to be big enough). `dask`: the scheduler at
    `dask_address` ($LINEAGE_DASK_ADDRESS), or else a temporary local cluster of
    `dask_workers` single-threaded processes on 127.0.0.1 without a dashboard.

    >>> build_task_runner("dask", dask_address="tcp://scheduler:8786").address
    'tcp://scheduler:8786'
    """
    kind = resolve_task_runner(kind, dask_address, dask_workers)
    if kind == "thread":
        return ThreadPoolTaskRunner(max_workers=64)
    from prefect_dask.task_runners import DaskTaskRunner

    address = dask_address or os.environ.get("LINEAGE_DASK_ADDRESS") or ""
    if address:
        return DaskTaskRunner(address=address)
    workers = dask_workers or dask_workers_default()
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": workers,
            "processes": True,
            "threads_per_worker": 1,
            "host": "127.0.0.1",
            "dashboard_address": None,
        }
    )


def slug(text: str) -> str:
    """An artifact key: lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "cascade"


@dataclass
class NodeRun:
    """What happened to one node, for the summary."""

    node: PlanNode
    status: str = "pending"
    new_ref: str | None = None
    cached: bool = False
    tests: dict[str, Any] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)
    error: str = ""
    warnings: list[str] = field(default_factory=list)
    started: float | None = None
    finished: float | None = None
    work_s: float = 0.0  # time spent inside the node's tasks (the rest is orchestration)
    compute_s: float = 0.0  # time its steps computed (recipe and tests, measured inside)
    queued_s: float = 0.0  # time its step waited for a free warm worker
    head_start_s: float = 0.0  # how long its step had run before the flow asked for it
    threads: int | None = None  # the derive step's torch threads
    parents: list[str] = field(default_factory=list)  # the parent refs it was derived on
    # (stage, event, perf_counter): submitted/handled here, began/ended inside the task
    # (same clock when tasks run in this process); bench/cascade.py reads it.
    trace: list[tuple[str, str, float]] = field(default_factory=list)
    origin: float = 0.0  # perf_counter when the cascade started

    def summary(self) -> dict[str, Any]:
        return {
            "model": self.node.model,
            "old_ref": self.node.old_ref,
            "new_ref": self.new_ref,
            "status": self.status,
            "cached": self.cached,
            "level": self.node.level,
            "tests": self.tests,
            "aliases": self.aliases,
            "error": self.error,
            "warnings": self.warnings,
            "seconds": None
            if self.started is None or self.finished is None
            else round(self.finished - self.started, 4),
            "start_s": None if self.started is None else round(self.started - self.origin, 4),
            "end_s": None if self.finished is None else round(self.finished - self.origin, 4),
            "work_s": round(self.work_s, 4),
            "compute_s": round(self.compute_s, 4),
            "queued_s": round(self.queued_s, 4),
            "head_start_s": round(self.head_start_s, 4),
            "threads": self.threads,
            "parents": self.parents,
            "trace": [
                (stage, event, round(at - self.origin, 4)) for stage, event, at in self.trace
            ],
        }


class CascadeRun:
    """The scheduler: submits tasks as the graph allows and records what happened."""

    def __init__(
        self,
        plan: CascadePlan,
        workspace_root: str,
        *,
        runner: str,
        concurrency: int,
        retries: int,
        reason: str,
        track: bool = True,
        cascade_id: str = "",
        warm: bool = True,
        threads: int | None = None,
        pool: WorkerPool | None = None,
    ) -> None:
        self.plan = plan
        self.pool = pool  # the warm workers, told of each derive before it is submitted
        self.root = workspace_root
        self.runner = runner
        self.warm = warm
        self.threads = threads
        self.concurrency = max(1, concurrency)
        # With warm workers the pool, not this count, bounds the steps computing at
        # once; twice as many nodes in flight lets one node's checkout, commit and gate
        # (work on this host) overlap another node's step.
        self.in_flight_limit = self.concurrency * (2 if warm and runner in POOLED_RUNNERS else 1)
        self.retries = retries
        self.reason = reason
        self.track = track
        self.cascade_id = cascade_id
        self.runs = {n.model: NodeRun(n) for n in plan.nodes}
        for node in plan.skipped:
            self.runs[node.model].status = SKIPPED
            self.runs[node.model].error = node.reason
        self.children = plan.children()
        self.priority = plan.priorities()
        self.order = {n.model: i for i, n in enumerate(plan.to_derive)}
        self.waiting = {n.model: set(n.plan_parents) for n in plan.to_derive}
        self.events: queue.Queue[tuple[str, str, PrefectFuture[Any]]] = queue.Queue()
        self.finished = 0
        self.progress_id: Any = None

    # ------------------------------------------------------------------ submitting

    def _watch(self, model: str, stage: str, future: PrefectFuture[Any]) -> None:
        self.runs[model].trace.append((stage, "submitted", time.perf_counter()))
        future.add_done_callback(lambda f: self.events.put((model, stage, f)))

    def _parent_refs(self, node: PlanNode) -> list[str]:
        return node.parent_refs({model: self.runs[model].new_ref for model in node.plan_parents})

    def _submit_derive(self, model: str) -> None:
        run = self.runs[model]
        run.status, run.started = "running", time.perf_counter()
        parents = self._parent_refs(run.node)
        run.parents = parents
        task = derive_task.with_options(
            task_run_name=f"derive {model} on {', '.join(parents)}",
            retries=self.retries,
        )
        message = f"cascade {self.plan.replaces} -> {self.plan.upstream}"
        self._watch(
            model,
            "derive",
            task.submit(
                self.root,
                run.node,
                parents,
                self.runner,
                message,
                self.track,
                self.cascade_id,
                self.warm,
                self.threads,
                self.priority[model],
            ),
        )
        self._event("start", run, f"deriving on {', '.join(parents)} (replaces {run.node.old_ref})")

    def _derived_ref(self, model: str) -> str:
        """The new version of `model`: only asked for once its derive step succeeded."""
        new_ref = self.runs[model].new_ref
        assert new_ref is not None, f"{model} is tested or gated before it was derived"
        return new_ref

    def _submit_test(self, model: str) -> None:
        new_ref = self._derived_ref(model)
        task = test_task.with_options(task_run_name=f"test {new_ref}", retries=self.retries)
        self._watch(model, "test", task.submit(self.root, new_ref, self.track, self.cascade_id))

    def _submit_gate(self, model: str, passed: bool) -> None:
        new_ref = self._derived_ref(model)
        task = gate_task.with_options(
            task_run_name=f"gate {new_ref} ({'pass' if passed else 'fail'})",
            retries=self.retries,
        )
        self._watch(model, "gate", task.submit(self.root, new_ref, passed, self.reason, self.track))

    # ------------------------------------------------------------------ outcomes
    def _event(self, event: str, run: NodeRun, text: str) -> None:
        """One log line per node event, and the same event to listeners (the CLI)."""
        level = logging.ERROR if run.status == FAILED else logging.INFO
        get_run_logger().log(level, "%s: %s", run.node.model, text)
        _notify(event, run.summary())

    def _finish(self, model: str, status: str, error: str = "") -> None:
        run = self.runs[model]
        run.status, run.finished = status, time.perf_counter()
        if error:
            run.error = error
        self.finished += 1
        self._update_progress()
        target = run.new_ref or run.node.old_ref
        took = f" in {run.finished - (run.started or run.finished):.1f} s"
        aliases = f" ({', '.join(run.aliases)})" if run.aliases else ""
        if status == FAILED:
            blocked = self.plan.subtree(model)
            self._event(
                "done",
                run,
                f"{target} failed{took}: {error}; blocking {', '.join(blocked) or 'nothing'}",
            )
            self._emit_failed(run, blocked)
        else:
            self._event("done", run, f"{target} {status}{aliases}{took}")

    def _emit_failed(self, run: NodeRun, blocked: list[str]) -> None:
        """`lineage.cascade.node.failed`, for automations (never fails the flow)."""
        from lineage.tracking.events import NODE_FAILED_EVENT, emit

        payload = {
            "workspace": self.root,
            "model": run.node.model,
            "old_ref": run.node.old_ref,
            "new_ref": run.new_ref,
            "parents": run.parents,
            "error": run.error,
            "blocked": blocked,
            "upstream": self.plan.upstream,
            "replaces": self.plan.replaces,
            "flow_run_id": str(flow_run.id) if flow_run.id else None,
        }
        resource = {
            "prefect.resource.id": f"lineage.model.{run.node.model}",
            "prefect.resource.name": run.node.model,
        }
        warning = emit(NODE_FAILED_EVENT, resource, payload)
        if warning:
            get_run_logger().warning("%s: %s", run.node.model, warning)

    def _block_subtree(self, model: str) -> None:
        for below in self.plan.subtree(model):
            run = self.runs[below]
            if run.status == "pending":
                run.status = BLOCKED
                run.error = f"not derived: {model} failed upstream of it"
                self.finished += 1
                self._event("done", run, f"blocked ({model} failed upstream of it)")
        self._update_progress()

    def _release_children(self, model: str, ready: list[tuple[float, int, str]]) -> None:
        for child in self.children.get(model, []):
            self.waiting[child].discard(model)
            if not self.waiting[child] and self.runs[child].status == "pending":
                heapq.heappush(ready, (-self.priority[child], self.order[child], child))

    def _handle(
        self,
        model: str,
        stage: str,
        future: PrefectFuture[Any],
        ready: list[tuple[float, int, str]],
    ) -> bool:
        """Process one finished task; True when the node is finished (slot freed)."""
        logger = get_run_logger()
        run = self.runs[model]
        result = future.result(raise_on_failure=False)
        if isinstance(result, BaseException):
            first_line = str(result).splitlines()[0] if str(result) else ""
            self._finish(model, FAILED, f"{stage} failed: {type(result).__name__}: {first_line}")
            self._block_subtree(model)
            return True
        assert isinstance(result, Timed)
        run.work_s += result.seconds
        run.trace += [
            (stage, "began", result.began),
            (stage, "ended", result.ended),
            (stage, "handled", time.perf_counter()),
        ]
        if result.warning:
            logger.warning("%s: %s", model, result.warning)
            run.warnings.append(result.warning)
        value = result.value
        if isinstance(value, DeriveOutcome):
            run.new_ref, run.cached = value.new_ref, value.cached
            run.compute_s, run.threads, run.queued_s, run.head_start_s = (
                value.compute_s,
                value.threads,
                value.queued_s,
                value.head_start_s,
            )
            if value.already_gated:
                # A previous run tested and gated this version: gate again (idempotent)
                # to finish a promotion it may have been killed in the middle of.
                run.tests = {"passed": True, "skipped": True}
                self._event("derived", run, f"reused {value.new_ref} (tested and gated before)")
                self._submit_gate(model, True)
            elif value.tests is not None:
                self._record_tests(run, value.tests)
                self._event(
                    "derived",
                    run,
                    f"derived {value.new_ref} in {result.seconds:.1f} s "
                    f"(compute {value.compute_s:.1f} s, {value.threads} thread(s)); "
                    f"tests {node_tests_label(run.tests)}",
                )
                self._submit_gate(model, value.tests.passed)
            else:
                how = "reused" if value.cached else "derived"
                self._event("derived", run, f"{how} {value.new_ref}; testing")
                self._submit_test(model)
            return False
        if isinstance(value, NodeTests):
            self._record_tests(run, value)
            self._event("tested", run, f"{value.ref}: tests {node_tests_label(run.tests)}")
            self._submit_gate(model, value.passed)
            return False
        assert isinstance(value, GateOutcome)
        run.aliases = list(value.holds)
        if value.note:
            run.warnings.append(value.note)
        if not value.passed:
            failed = ", ".join(run.tests.get("failed") or []) or "see test results"
            self._finish(model, FAILED, f"tests failed: {failed}")
            self._block_subtree(model)
            return True
        self._finish(model, PROMOTED if value.promoted else CANDIDATE)
        self._release_children(model, ready)
        return True

    @staticmethod
    def _record_tests(run: NodeRun, tests: NodeTests) -> None:
        run.tests = {"passed": tests.passed, "total": tests.total, "failed": tests.failed}

    def _update_progress(self) -> None:
        if self.progress_id is None:
            return
        total = max(1, len(self.plan.to_derive))
        done = sum(1 for r in self.runs.values() if r.status in FINAL and r.node.action == "derive")
        update_progress_artifact(
            self.progress_id,
            100.0 * done / total,
            description=f"{done}/{total} nodes finished",
        )

    # ------------------------------------------------------------------ main loop
    def run(self) -> None:
        total = len(self.plan.to_derive)
        origin = time.perf_counter()
        for node_run in self.runs.values():
            node_run.origin = origin
        if total:
            self.progress_id = create_progress_artifact(
                0.0,
                key=f"{slug(self.plan.upstream)}-cascade-progress",
                description=f"cascade {self.plan.replaces} -> {self.plan.upstream}: 0/{total}",
            )
        ready: list[tuple[float, int, str]] = []
        for node in self.plan.to_derive:
            if not self.waiting[node.model]:
                heapq.heappush(
                    ready, (-self.priority[node.model], self.order[node.model], node.model)
                )
        in_flight = 0
        while self.finished < total:
            while ready and in_flight < self.in_flight_limit:
                _, _, model = heapq.heappop(ready)
                if self.runs[model].status != "pending":
                    continue
                if self.pool is not None:
                    # Tasks start at once: the next free worker goes to the highest
                    # priority, not to the task that happens to reach the pool first.
                    self.pool.expect(announced_as(self.cascade_id, model), self.priority[model])
                self._submit_derive(model)
                in_flight += 1
            if in_flight == 0:
                break  # nothing runs and nothing can start: the rest is blocked
            model, stage, future = self.events.get()
            if self._handle(model, stage, future, ready):
                in_flight -= 1

    def summary(self) -> dict[str, Any]:
        nodes = [self.runs[n.model].summary() for n in self.plan.nodes]
        counts: dict[str, int] = {}
        for node in nodes:
            counts[node["status"]] = counts.get(node["status"], 0) + 1
        counts["cached"] = sum(1 for n in nodes if n["cached"])
        return {
            "upstream": self.plan.upstream,
            "replaces": self.plan.replaces,
            "flow_run_id": str(flow_run.id) if flow_run.id else None,
            "levels": self.plan.levels,
            "nodes": nodes,
            "counts": counts,
        }


def _parent_labels(run: CascadeRun, node: dict[str, Any]) -> list[str]:
    """The refs a node was derived on, or, if it was not derived, what the plan named."""
    if node["parents"]:
        return list(node["parents"])
    planned = run.plan.node(node["model"]).parents
    return [f"{p.model}@next" if p.source == "plan" else p.new_ref or p.old_ref for p in planned]


def _linked(ref: str, ui: str | None) -> str:
    """A ref as a Markdown link into the UI when it can be one (`@next` cannot)."""
    text = ref.replace("|", "\\|")
    if ui is None or ref.endswith("@next"):
        return f"`{text}`"
    return f"[`{text}`]({ui}/#/version/{quote(ref, safe='')})"


def _offline_graph(run: CascadeRun, key: str) -> Path:
    """A self-contained HTML page of the cascade's families (the explorer, offline),
    written into the workspace: a graph to open when no `lineage ui` is running."""
    from lineage.ui.export import export_html

    workspace = open_workspace(run.root)
    models = sorted({run.plan.upstream.split("@", 1)[0], *(n.model for n in run.plan.nodes)})
    folder = workspace.lineage_dir / "cascades"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key}-{str(flow_run.id or 'local')[:8]}.html"
    path.write_text(export_html(workspace, models))
    return path


def _publish_artifacts(run: CascadeRun, summary: dict[str, Any]) -> None:
    """The cascade's artifacts: a table, a Markdown report (both render in the
    open-source Prefect UI, unlike Mermaid) and a link to the lineage graph."""
    from lineage.ui.links import configured_ui_url

    key = slug(run.plan.upstream)
    ui = configured_ui_url()
    rows = []
    lines = []
    for n in summary["nodes"]:
        parents = _parent_labels(run, n)
        outcome = n["status"] + (" (reused)" if n["cached"] else "")
        note = "; ".join(filter(None, [n["error"], *n["warnings"]]))
        rows.append(
            {
                "node": n["model"],
                "old → new": f"{n['old_ref']} → {n['new_ref'] or '-'}",
                "parents": ", ".join(parents),
                "tests": node_tests_label(n["tests"]),
                "outcome": outcome,
                "aliases": ", ".join(n["aliases"]),
                "note": note,
            }
        )
        seconds = "-" if n["seconds"] is None else f"{n['seconds']:.1f} s"
        new = _linked(n["new_ref"], ui) if n["new_ref"] else "-"
        lines.append(
            f"| {n['model']} | {_linked(n['old_ref'], ui)} → {new} | "
            f"{', '.join(_linked(ref, ui) for ref in parents)} | {node_tests_label(n['tests'])} | "
            f"**{outcome}** | {seconds} | {note.replace('|', '/')} |"
        )
    counts = ", ".join(f"{v} {k}" for k, v in sorted(summary["counts"].items()))
    title = f"cascade {run.plan.replaces} → {run.plan.upstream}"
    create_table_artifact(rows, key=f"{key}-cascade-summary", description=f"{title}: {counts}")
    links = _graph_links(run, key, ui, summary.get("cascade_run_id"))
    markdown = "\n".join(
        [
            f"# Cascade {run.plan.replaces} → {run.plan.upstream}",
            "",
            f"{counts}. Levels: " + " | ".join(", ".join(level) for level in run.plan.levels),
            "",
            "| node | old → new | parents | tests | outcome | time | note |",
            "|---|---|---|---|---|---|---|",
            *lines,
            "",
            *(f"Graph: [{text}]({url})" for _, url, text in links),
        ]
    )
    create_markdown_artifact(
        markdown, key=f"{key}-cascade-lineage", description=f"lineage subtree of the {title}"
    )
    for suffix, url, text in links:
        create_link_artifact(url, link_text=text, key=f"{key}-{suffix}")


def _graph_links(
    run: CascadeRun, key: str, ui: str | None, cascade_run_id: int | None
) -> list[tuple[str, str, str]]:
    """(artifact key suffix, URL, text) of the cascade on the lineage graph.

    `-cascade-ui` opens the recorded run in `lineage ui` (at `$LINEAGE_UI_URL`, else its
    default address); `-cascade-graph` is an offline HTML page, written only when no UI
    address is configured, so that a graph opens even with no server running."""
    from lineage.ui.links import cascade_ui_url

    title = f"cascade {run.plan.replaces} → {run.plan.upstream}"
    links = []
    if cascade_run_id is not None:
        links.append(("cascade-ui", cascade_ui_url(cascade_run_id), f"{title} in lineage ui"))
    elif ui is not None:
        links.append(("cascade-ui", f"{ui}/#/", "the lineage graph in lineage ui"))
    if ui is None:
        path = _offline_graph(run, key)
        links.append(("cascade-graph", path.as_uri(), f"the lineage graph (HTML file {path})"))
    return links


def _in_background(function: Callable[..., None], *args: Any) -> threading.Thread:
    """Run `function(*args)` in a thread, in this context (Prefect's settings and run
    context are context variables); join it before relying on its effect."""
    context = contextvars.copy_context()
    thread = threading.Thread(
        target=context.run, args=(function, *args), name="lineage-flow-side", daemon=True
    )
    thread.start()
    return thread


def _tag_flow_run(plan: CascadePlan, flow_run_id: Any) -> None:
    """Tag flow run `flow_run_id` (not its task runs) with the upstream model and
    version (in the background: two API calls the first nodes need not wait for).

    Task runs carry no tags on purpose: Prefect acquires a concurrency slot per tag
    for every task run, an API call that costs 0.5-2 s on a busy server, which would
    be most of the per-node overhead. Their names say which node they are.
    """
    from prefect.client.orchestration import get_client

    tags = {
        "lineage",
        "cascade",
        f"upstream:{plan.upstream}",
        f"model:{plan.upstream.split('@', 1)[0]}",
    }
    try:
        with get_client(sync_client=True) as client:
            current = client.read_flow_run(flow_run_id)
            client.update_flow_run(flow_run_id, tags=sorted(tags | set(current.tags or [])))
    except Exception as exc:  # tags help find the run in the UI; the cascade goes on
        logging.getLogger(__name__).warning("could not tag the flow run: %s", exc)


def _run_name() -> str:
    params = flow_run.parameters
    replaces = params.get("replaces") or "previous"
    return f"cascade {params.get('upstream')} (replaces {replaces})"


@flow(
    name="lineage-cascade",
    flow_run_name=_run_name,
    # Chosen when this module is imported, from $LINEAGE_TASK_RUNNER and
    # $LINEAGE_DASK_ADDRESS (a work pool's env sets them for a deployment); callers in
    # Python pick one per run with `run_cascade(task_runner=...)`.
    task_runner=build_task_runner(),
    description="Re-derive, test and gate every descendant of a replaced model version.",
)
def cascade_flow(
    upstream: str,
    replaces: str = "",
    workspace: str = "",
    runner: str = "process",
    concurrency: int = 4,
    retries: int = 2,
    track: bool = True,
    warm: bool = True,
    threads: int | None = None,
) -> dict[str, Any]:
    """Cascade the new version `upstream` (e.g. `base@2`) through the lineage graph.

    Args:
        upstream: the new version.
        replaces: the version it supersedes (default: its previous version).
        workspace: the workspace directory (default: $LINEAGE_WORKSPACE or the cwd).
        runner: where steps run: process, docker, or inline (this process).
        concurrency: how many nodes may run at once.
        retries: retries of a step that failed for a transient reason.
        track: record derive and test runs, versions and aliases in MLflow.
        warm: run steps on warm workers (one per slot, reused from step to step);
            False starts a fresh process or container for every step.
        threads: torch threads of every step (default: `step_threads(concurrency)`,
            which keeps the steps at once within the cores); recorded per version.

    Returns:
        The summary: one entry per node with its outcome, plus counts, the workers
        and the Prefect API used.
    """
    logger = get_run_logger()
    threads = threads or step_threads(concurrency)
    pool = None
    if warm and runner in POOLED_RUNNERS:
        # Started now (if `run_cascade` has not already), so the workers import torch
        # while the plan is made; tasks in this process draw on the same pool.
        pool = pool_for(runner, concurrency, threads)
    started_at = datetime.now(UTC)
    try:
        root = _root_of(workspace)
        plan = build_plan(open_workspace(root), upstream, replaces or None)
        if any(node.kind in DERIVABLE_KINDS for node in plan.to_derive):
            preload_torch()  # this process verifies derivable versions: it needs torch
        tagging = _in_background(_tag_flow_run, plan, flow_run.id)
        lines = describe_plan(plan)
        logger.info("\n".join(lines))
        _notify("plan", {"lines": lines})
        api = _api or _configured_api()
        if api.started_here:
            logger.info(
                "Prefect: local server at %s started in %.1f s (set PREFECT_API_URL, e.g. to "
                "a `lineage server start`, to skip this)",
                api.url,
                api.startup_s,
            )
        run = CascadeRun(
            plan,
            root,
            runner=runner,
            concurrency=concurrency,
            retries=retries,
            reason=f"cascade {plan.replaces} -> {plan.upstream}: tests passed "
            f"(flow run {flow_run.id})",
            track=track,
            cascade_id=f"{plan.replaces}->{plan.upstream}",
            warm=warm,
            threads=threads,
            pool=pool,
        )
        if pool is not None:
            # From here on the flow asks for its steps: a head start (`run_cascade`)
            # that has not started one by now must not start it (nobody would take it).
            pool.close_early()
        # Children of one parent (every child of the new base) share its checkout; a
        # node's children start their steps while it is committed.
        with (
            shared_parent_checkouts(),
            child_head_starts(lambda: open_workspace(root), plan, pool),
        ):
            run.run()
        summary = run.summary()
        summary["workers"] = {
            "runner": runner,
            "warm": pool is not None,
            "slots": pool.slots if pool is not None else concurrency,
            "threads": threads,
            "replaced": pool.replaced if pool is not None else 0,
            # Each worker's own cores (`lineage.steps.pool.placement`), if pinned.
            "pinned": pool.pinned() if pool is not None else [],
            # Steps started while Prefect started, whose results the flow took.
            "early": pool.early_taken if pool is not None else 0,
        }
        summary["prefect"] = api.to_dict()
        summary["cascade_run_id"] = record_cascade_run(
            open_workspace(root), summary, started_at=started_at
        )
        _publish_artifacts(run, summary)
        tagging.join()
        logger.info("cascade finished: %s", summary["counts"])
        return summary
    finally:
        if pool is not None:
            close_shared_pools()


@dataclass
class PrefectApi:
    """The Prefect API a cascade ran against, and what it cost to start."""

    url: str
    started_here: bool  # a local ephemeral server started by this process
    startup_s: float  # 0 when it was already running (or is someone else's)

    def to_dict(self) -> dict[str, Any]:
        return {
            "api_url": self.url,
            "ephemeral": self.started_here,
            "startup_s": round(self.startup_s, 3),
        }


_api: PrefectApi | None = None  # what `run_cascade` set up, for the flow to report


def _configured_api() -> PrefectApi:
    from prefect.settings import PREFECT_API_URL

    return PrefectApi(str(PREFECT_API_URL.value() or ""), False, 0.0)


def start_local_server() -> LocalPrefectServer | None:
    """Without a configured API, this process's local Prefect server, started now if
    it is not yet (`ensure_prefect_api` waits for it); None with one."""
    from prefect.settings import PREFECT_API_URL, get_current_settings

    from lineage.tracking.prefect_server import local_server

    if PREFECT_API_URL.value():
        return None
    return local_server(get_current_settings().to_environment_variables(exclude_unset=True))


def ensure_prefect_api(startup_timeout_s: int) -> PrefectApi:
    """The configured Prefect API (nothing is started), else a local Prefect server
    (`lineage.tracking.prefect_server`), started once per process; and how long the
    start took."""
    from prefect.settings import PREFECT_API_URL

    from lineage.tracking.prefect_server import started_server

    configured = PREFECT_API_URL.value()
    if configured:
        early = started_server()
        if early is not None:
            early.stop()  # a profile names an API after all: the early start was not needed
        return PrefectApi(str(configured), False, 0.0)
    # Started here now, or earlier: by `run_cascade` first thing, or by the CLI while it
    # imported Prefect.
    server = start_local_server()
    assert server is not None
    first_use = server.startup_s is None
    startup_s = server.wait_ready(startup_timeout_s)
    return PrefectApi(server.api_url, True, startup_s if first_use else 0.0)


def _root_of(workspace: str) -> str:
    """The root folder of a `workspace` argument ("": the current folder's workspace)."""
    from lineage.workspace import Workspace

    return str(Workspace.open(workspace or None).root)


def run_cascade(
    upstream: str,
    *,
    replaces: str = "",
    workspace: str = "",
    runner: str = "process",
    concurrency: int = 4,
    retries: int = 2,
    track: bool = True,
    warm: bool = True,
    threads: int | None = None,
    task_runner: str | None = None,
    dask_address: str | None = None,
    dask_workers: int | None = None,
) -> dict[str, Any]:
    """Run the cascade flow in this process, without the per-flow heartbeat thread.

    With `$PREFECT_API_URL` (or the workspace's `[prefect] api_url`, which the CLI
    exports) the run is recorded there and nothing is started; otherwise Prefect's
    local ephemeral server is started once per process, while the warm workers start
    too, and its start-up time is in the summary (`summary["prefect"]`).

    `task_runner` is `thread` (default) or `dask`; for `dask`, `dask_address` names an
    existing scheduler, else a local cluster of `dask_workers` processes runs the tasks
    (see `build_task_runner`).
    """
    global _api
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        temporary_settings,
    )

    kind = resolve_task_runner(task_runner, dask_address, dask_workers)
    chosen = build_task_runner(kind, dask_address=dask_address, dask_workers=dask_workers)
    # The local server's start-up (CPU-bound) is the longest thing the flow waits for:
    # it starts first, the workers' imports and the head start alongside.
    start_local_server()
    shared = contextlib.ExitStack()
    if kind == "thread":
        # The workers and this process import torch & co. while Prefect's server starts,
        # and the new upstream version, every first node's parent, is checked out.
        warm_up(runner, concurrency, warm=warm, threads=threads)
        shared.enter_context(shared_parent_checkouts())
        prefetch_parent(lambda: open_workspace(_root_of(workspace)), upstream)
        if warm and runner in POOLED_RUNNERS and head_starts_enabled():
            # The first nodes' steps start as soon as a worker is ready; their derive
            # tasks take the results (closed before the shared checkouts they read).
            head_start = HeadStart(
                lambda: open_workspace(_root_of(workspace)),
                upstream,
                replaces or None,
                pool_for(runner, concurrency, threads),
            )
            shared.callback(head_start.close)
    # The local server needs more than Prefect's default 20 s to start on a small,
    # busy machine; the heartbeat thread would cost ~1 s per flow run.
    startup = max(STARTUP_TIMEOUT_S, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value())
    try:
        _api = ensure_prefect_api(startup)
    except BaseException:
        shared.close()
        close_shared_pools()
        raise
    settings: dict[Any, Any] = {
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: startup,
        # Tasks (and Dask workers, which are other processes and would otherwise each
        # start a server of their own) use the API just made sure of.
        PREFECT_API_URL: _api.url,
    }
    with shared, temporary_settings(settings):
        return cascade_flow.with_options(task_runner=chosen)(
            upstream=upstream,
            replaces=replaces,
            workspace=workspace,
            runner=runner,
            concurrency=concurrency,
            retries=retries,
            track=track,
            warm=warm,
            threads=threads,
        )
