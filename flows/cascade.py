"""The update cascade as a Prefect flow.

`cascade_flow(upstream="base@2")` plans the cascade (`lineage.cascade`), then
walks it: each node is a derive task, a test task and a gate task; a node starts as
soon as every parent it waits for has passed (not level by level), at most
`concurrency` nodes at a time, the tallest subtree first. A node that fails (its
derive raised after retries, or its tests failed) blocks exactly its subtree;
independent branches go on.

Progress shows in the Prefect UI as a progress artifact updated per finished node;
at the end a table artifact summarises every node and a markdown artifact draws the
lineage subtree coloured by outcome.

Run it without a server (`lineage cascade base@2`: Prefect's ephemeral mode) or as
a deployment triggered by `lineage.model.committed` (see `deployments.yaml`).

Tasks run on a thread pool in the flow's process by default, or on a Dask cluster
(`task_runner="dask"`: a local multi-process cluster, or an existing scheduler by
address). Tasks receive only plain values (the workspace *path*, the plan node,
refs) and re-open the workspace where they run, so any worker that sees the
workspace at the same path (and its database) can run them.
"""

from __future__ import annotations

import heapq
import os
import queue
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

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
from lineage.cascade.history import record_cascade_run
from lineage.cascade.node import DeriveOutcome, NodeTests
from lineage.cascade.plan import CascadePlan, PlanNode
from lineage.cascade.settings import dask_workers_default, resolve_task_runner
from lineage.ops.promote import GateOutcome
from lineage.render.plan import describe_plan, node_tests_label, plan_mermaid
from tasks.common import Timed, open_workspace
from tasks.derive import derive_task
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
    this process ("start", "derived", "done"); for progress output."""
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
    from prefect_dask import DaskTaskRunner

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
    ) -> None:
        self.plan = plan
        self.root = workspace_root
        self.runner = runner
        self.concurrency = max(1, concurrency)
        self.retries = retries
        self.reason = reason
        self.track = track
        self.cascade_id = cascade_id
        self.runs = {n.model: NodeRun(n) for n in plan.nodes}
        for node in plan.skipped:
            self.runs[node.model].status = SKIPPED
            self.runs[node.model].error = node.reason
        self.children = plan.children()
        self.heights = plan.heights()
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
        refs = []
        for parent in node.parents:
            if parent.source == "plan":
                new_ref = self.runs[parent.model].new_ref
                assert new_ref is not None, f"{node.model} started before {parent.model}"
                refs.append(new_ref)
            else:
                refs.append(parent.new_ref or parent.old_ref)
        return refs

    def _submit_derive(self, model: str) -> None:
        run = self.runs[model]
        run.status, run.started = "running", time.perf_counter()
        parents = self._parent_refs(run.node)
        task = derive_task.with_options(
            task_run_name=f"derive {model} on {', '.join(parents)}",
            retries=self.retries,
        )
        message = f"cascade {self.plan.replaces} -> {self.plan.upstream}"
        self._watch(
            model,
            "derive",
            task.submit(
                self.root, run.node, parents, self.runner, message, self.track, self.cascade_id
            ),
        )
        _notify("start", run.summary())

    def _submit_test(self, model: str) -> None:
        run = self.runs[model]
        task = test_task.with_options(task_run_name=f"test {run.new_ref}", retries=self.retries)
        self._watch(model, "test", task.submit(self.root, run.new_ref, self.track, self.cascade_id))

    def _submit_gate(self, model: str, passed: bool) -> None:
        run = self.runs[model]
        task = gate_task.with_options(
            task_run_name=f"gate {run.new_ref} ({'pass' if passed else 'fail'})",
            retries=self.retries,
        )
        self._watch(
            model, "gate", task.submit(self.root, run.new_ref, passed, self.reason, self.track)
        )

    # ------------------------------------------------------------------ outcomes
    def _finish(self, model: str, status: str, error: str = "") -> None:
        run = self.runs[model]
        run.status, run.finished = status, time.perf_counter()
        if error:
            run.error = error
        self.finished += 1
        self._update_progress()
        _notify("done", run.summary())

    def _block_subtree(self, model: str) -> None:
        for below in self.plan.subtree(model):
            run = self.runs[below]
            if run.status == "pending":
                run.status = BLOCKED
                run.error = f"not derived: {model} failed upstream of it"
                self.finished += 1
                _notify("done", run.summary())
        self._update_progress()

    def _release_children(self, model: str, ready: list[tuple[int, int, str]]) -> None:
        for child in self.children.get(model, []):
            self.waiting[child].discard(model)
            if not self.waiting[child] and self.runs[child].status == "pending":
                heapq.heappush(ready, (-self.heights[child], self.order[child], child))

    def _handle(
        self, model: str, stage: str, future: PrefectFuture[Any], ready: list[tuple[int, int, str]]
    ) -> bool:
        """Process one finished task; True when the node is finished (slot freed)."""
        logger = get_run_logger()
        run = self.runs[model]
        result = future.result(raise_on_failure=False)
        if isinstance(result, BaseException):
            first_line = str(result).splitlines()[0] if str(result) else ""
            error = f"{stage} failed: {type(result).__name__}: {first_line}"
            logger.error(
                "%s: %s; blocking %s",
                model,
                error,
                ", ".join(self.plan.subtree(model)) or "nothing below it",
            )
            self._finish(model, FAILED, error)
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
            _notify("derived", run.summary())
            if value.already_gated:
                # A previous run tested and gated this version: gate again (idempotent)
                # to finish a promotion it may have been killed in the middle of.
                run.tests = {"passed": True, "skipped": True}
                self._submit_gate(model, True)
            else:
                self._submit_test(model)
            return False
        if isinstance(value, NodeTests):
            run.tests = {"passed": value.passed, "total": value.total, "failed": value.failed}
            self._submit_gate(model, value.passed)
            return False
        assert isinstance(value, GateOutcome)
        run.aliases = list(value.holds)
        if value.note:
            run.warnings.append(value.note)
        if not value.passed:
            failed = ", ".join(run.tests.get("failed") or []) or "see test results"
            logger.warning("%s: tests failed (%s); blocking its subtree", run.new_ref, failed)
            self._finish(model, FAILED, f"tests failed: {failed}")
            self._block_subtree(model)
            return True
        self._finish(model, PROMOTED if value.promoted else CANDIDATE)
        self._release_children(model, ready)
        return True

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
        ready: list[tuple[int, int, str]] = []
        for node in self.plan.to_derive:
            if not self.waiting[node.model]:
                heapq.heappush(
                    ready, (-self.heights[node.model], self.order[node.model], node.model)
                )
        in_flight = 0
        while self.finished < total:
            while ready and in_flight < self.concurrency:
                _, _, model = heapq.heappop(ready)
                if self.runs[model].status != "pending":
                    continue
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


def _publish_artifacts(run: CascadeRun, summary: dict[str, Any]) -> None:
    key = slug(run.plan.upstream)
    rows = [
        {
            "node": n["model"],
            "old → new": f"{n['old_ref']} → {n['new_ref'] or '-'}",
            "tests": node_tests_label(n["tests"]),
            "outcome": n["status"] + (" (reused)" if n["cached"] else ""),
            "aliases": ", ".join(n["aliases"]),
            "note": "; ".join(filter(None, [n["error"], *n["warnings"]])),
        }
        for n in summary["nodes"]
    ]
    counts = ", ".join(f"{v} {k}" for k, v in sorted(summary["counts"].items()))
    create_table_artifact(
        rows,
        key=f"{key}-cascade-summary",
        description=f"cascade {run.plan.replaces} → {run.plan.upstream}: {counts}",
    )
    status = {n["model"]: n["status"] for n in summary["nodes"]}
    markdown = "\n".join(
        [
            f"# Cascade {run.plan.replaces} → {run.plan.upstream}",
            "",
            f"{counts}. Levels: " + " | ".join(", ".join(level) for level in run.plan.levels),
            "",
            "```mermaid",
            plan_mermaid(run.plan, status),
            "```",
        ]
    )
    create_markdown_artifact(
        markdown, key=f"{key}-cascade-lineage", description="lineage subtree of the cascade"
    )
    if summary.get("cascade_run_id") is not None:
        from lineage.ui.links import cascade_ui_url

        create_link_artifact(
            cascade_ui_url(summary["cascade_run_id"]),
            link_text=f"cascade {run.plan.replaces} → {run.plan.upstream} in lineage ui",
            key=f"{key}-cascade-ui",
            description="this cascade drawn on the lineage graph (`lineage ui`)",
        )


def _tag_flow_run(plan: CascadePlan) -> None:
    """Tag this flow run (not its task runs) with the upstream model and version.

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
    with get_client(sync_client=True) as client:
        current = client.read_flow_run(flow_run.id)
        client.update_flow_run(flow_run.id, tags=sorted(tags | set(current.tags or [])))


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

    Returns:
        The summary: one entry per node with its outcome, plus counts.
    """
    from lineage.workspace import Workspace

    logger = get_run_logger()
    started_at = datetime.now(UTC)
    root = str(Workspace.open(workspace or None).root)
    plan = build_plan(open_workspace(root), upstream, replaces or None)
    _tag_flow_run(plan)
    for line in describe_plan(plan):
        logger.info(line)
    run = CascadeRun(
        plan,
        root,
        runner=runner,
        concurrency=concurrency,
        retries=retries,
        reason=f"cascade {plan.replaces} -> {plan.upstream}: tests passed (flow run {flow_run.id})",
        track=track,
        cascade_id=f"{plan.replaces}->{plan.upstream}",
    )
    run.run()
    summary = run.summary()
    summary["cascade_run_id"] = record_cascade_run(
        open_workspace(root), summary, started_at=started_at
    )
    _publish_artifacts(run, summary)
    logger.info("cascade finished: %s", summary["counts"])
    return summary


def run_cascade(
    upstream: str,
    *,
    replaces: str = "",
    workspace: str = "",
    runner: str = "process",
    concurrency: int = 4,
    retries: int = 2,
    track: bool = True,
    task_runner: str | None = None,
    dask_address: str | None = None,
    dask_workers: int | None = None,
) -> dict[str, Any]:
    """Run the cascade flow in this process (Prefect's local/ephemeral mode when no
    API is configured), without the per-flow heartbeat thread.

    `task_runner` is `thread` (default) or `dask`; for `dask`, `dask_address` names an
    existing scheduler, else a local cluster of `dask_workers` processes runs the tasks
    (see `build_task_runner`).
    """
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        temporary_settings,
    )

    kind = resolve_task_runner(task_runner, dask_address, dask_workers)
    chosen = build_task_runner(kind, dask_address=dask_address, dask_workers=dask_workers)
    # The ephemeral server needs more than Prefect's default 20 s to start on a
    # small, busy machine; the heartbeat thread would cost ~1 s per flow run.
    startup = max(90, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value())
    settings: dict[Any, Any] = {
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: startup,
    }
    if kind == "dask" and not PREFECT_API_URL.value():
        # Dask workers are other processes: without an API URL each would start an
        # ephemeral server of its own. They get this one's address (Prefect passes
        # the settings context to every task it submits).
        settings[PREFECT_API_URL] = _ephemeral_api_url(startup)
    with temporary_settings(settings):
        return cascade_flow.with_options(task_runner=chosen)(
            upstream=upstream,
            replaces=replaces,
            workspace=workspace,
            runner=runner,
            concurrency=concurrency,
            retries=retries,
            track=track,
        )


def _ephemeral_api_url(startup_s: int) -> str:
    """Start (once per process) Prefect's local ephemeral server; its API URL."""
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    server.start(timeout=startup_s)
    return server.api_url
