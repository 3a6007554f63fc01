"""One cascade node's work, without Prefect: derive (or find it done), test, gate.

Each function is idempotent, so a resumed cascade can call them again on a node a
crashed run had finished: `derive_node` finds the committed version in the derive
cache, `gate_node` (the promotion rule of `lineage.ops.promote.gate`) leaves aliases
that already point at the version alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from lineage.cascade import cache
from lineage.cascade.plan import PlanNode
from lineage.errors import (
    CycleError,
    DataError,
    LineageError,
    ModelTestError,
    NotFoundError,
    PromotionError,
    RecipeError,
    UsageError,
    WeightsError,
)
from lineage.ops.promote import GateOutcome, gate

if TYPE_CHECKING:
    from pathlib import Path

    from lineage.ops.tests import ResolvedTest
    from lineage.records import VersionInfo
    from lineage.steps.runners import Runner
    from lineage.workspace import Workspace

CASCADE_ACTOR = "lineage-cascade"

# Failures that a retry cannot fix: the request itself is wrong.
_PERMANENT = (
    RecipeError,
    DataError,
    UsageError,
    NotFoundError,
    WeightsError,
    ModelTestError,
    CycleError,
    PromotionError,
)
# Step exit codes (the error classes' and lineage.steps.spec.StepExit) that mean "the
# step's input is wrong", not "bad luck".
_PERMANENT_STEP_EXITS = set(range(1, 20)) | {64, 65}


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the step might succeed (a busy DB, a killed container...)."""
    if isinstance(exc, _PERMANENT):
        return False
    exit_code = getattr(exc, "step_exit_code", None) or getattr(exc, "returncode", None)
    if isinstance(exit_code, int) and exit_code in _PERMANENT_STEP_EXITS:
        return False
    return not isinstance(exc, TypeError | ValueError | KeyError | AttributeError)


@dataclass
class NodeTests:
    """The node's own and inherited tests on its new version."""

    ref: str
    passed: bool
    total: int
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    skipped: bool = False  # the node was gated by an earlier run: tests not re-run

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DeriveOutcome:
    """What deriving one node gave: the new version, and whether it was already done.

    `tests` holds the node's test results when they ran in the derive step itself (on
    the model it had just made); None when they still have to run (`test_node`).
    `compute_s` is the time the step spent computing (recipe and tests, measured
    inside it) and `queued_s` the time it waited for a free warm worker; the rest of
    `seconds` is checkout, storing and bookkeeping.
    """

    model: str
    old_ref: str
    new_ref: str
    version_id: int
    parents: list[str]
    cached: bool
    already_gated: bool
    cache_key: str
    seconds: float
    tests: NodeTests | None = None
    compute_s: float = 0.0
    threads: int | None = None
    queued_s: float = 0.0  # waiting for a free warm worker (other nodes were computing)
    # How long before this derive began its step began: a cascade's first steps start
    # while Prefect does (`lineage.cascade.headstart`).
    head_start_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def node_tests(workspace: Workspace, model: str, parent_refs: Sequence[str]) -> list[ResolvedTest]:
    """The tests that will apply to `model`'s new version on `parent_refs` (its own
    and inherited declarations), known before the version exists."""
    from lineage.ops.tests import model_chain, resolve_tests_along

    parent_ids = [workspace.resolve(ref).id for ref in parent_refs]
    return resolve_tests_along(workspace, model_chain(workspace, model, parent_ids))


def _tests_from_step(
    workspace: Workspace, version: VersionInfo, asked: list[str]
) -> NodeTests | None:
    """The node's tests as the derive step stored them, or None if it could not run them."""
    stored = workspace.graph.latest_results(version.id)
    if any(name not in stored for name in asked):
        return None
    results = [stored[name] for name in asked]
    return NodeTests(
        ref=version.ref,
        passed=all(r.passed for r in results),
        total=len(results),
        failed=[r.test_name for r in results if not r.passed],
        seconds=sum(r.duration_s or 0.0 for r in results),
    )


def derive_node(
    workspace: Workspace,
    node: PlanNode,
    parent_refs: Sequence[str],
    *,
    runner: Runner | str | None = None,
    message: str = "",
    with_tests: bool = True,
    on_step_done: Callable[[Path], None] | None = None,
) -> DeriveOutcome:
    """Re-derive `node` on `parent_refs` and commit it, unless that was already done.

    The commit (by `lineage.ops.derive.rederive`) records the node's next version
    with derivation edges to `parent_refs` and a versioning edge from the old one.
    With `with_tests`, the node's tests run in the derive step too, on the model it
    just made, and their results are stored on the new version (`tests` of the
    outcome); a version found in the derive cache is not re-tested here.
    `on_step_done` is `rederive`'s (a cascade starts the children's steps then).
    """
    from lineage.ops.derive import rederive

    started, asked = time.perf_counter(), time.monotonic()
    key = cache.node_key(node, parent_refs)
    found = cache.find_derived(workspace, node, parent_refs)
    cached = found is not None
    tests: NodeTests | None = None
    if found is None:
        resolved = node_tests(workspace, node.model, parent_refs) if with_tests else []
        found = rederive(
            workspace,
            node.old_ref,
            list(parent_refs),
            runner=runner,
            message=message or f"cascade: re-derived on {', '.join(parent_refs)}",
            tests=resolved,
            on_step_done=on_step_done,
        )
        workspace.graph.remember_derivation(key, found.id)
        if with_tests:
            tests = _tests_from_step(workspace, found, [t.declaration.name for t in resolved])
    extra = found.extra or {}
    from lineage.steps.pool import WorkerPool

    queued, head_start = 0.0, 0.0
    if isinstance(runner, WorkerPool) and not cached:
        queued = runner.waited_s()
        began = runner.early_began()
        head_start = 0.0 if began is None else max(0.0, asked - began)
    return DeriveOutcome(
        model=node.model,
        old_ref=node.old_ref,
        new_ref=found.ref,
        version_id=found.id,
        parents=list(parent_refs),
        cached=cached,
        already_gated=cached and bool({"candidate", "champion"} & set(found.aliases)),
        cache_key=key,
        seconds=time.perf_counter() - started,
        tests=tests,
        compute_s=0.0
        if cached
        else float(extra.get("derive_seconds") or 0.0) + (tests.seconds if tests else 0.0),
        threads=extra.get("threads"),
        queued_s=queued,
        head_start_s=head_start,
    )


def test_node(workspace: Workspace, ref: str) -> NodeTests:
    """Run the version's own and inherited tests (results are stored by `run_tests`)."""
    from lineage.ops.tests import run_tests

    started = time.perf_counter()
    report = run_tests(workspace, ref)
    return NodeTests(
        ref=ref,
        passed=report.passed,
        total=len(report.results),
        failed=report.failed,
        seconds=time.perf_counter() - started,
    )


def gate_node(
    workspace: Workspace,
    ref: str,
    passed: bool,
    *,
    reason: str,
    actor: str = CASCADE_ACTOR,
    track: bool = True,
) -> GateOutcome:
    """Gate `ref` by the promotion rule (`lineage.ops.promote.gate`)."""
    return gate(workspace, ref, passed, reason=reason, actor=actor, track=track)


def track_derive(
    workspace: Workspace, ref: str, *, cascade_id: str, flow_run_id: str | None
) -> str:
    """Queue the derive step's MLflow run (tagged with the cascade and flow run); the
    background writer writes it, off the cascade's path. Returns "" or a one-line
    warning: the lineage DB is the source of truth and `lineage sync mlflow` repairs
    MLflow, so tracking is never fatal to the node.
    """
    from lineage.tracking import queue_derive
    from lineage.tracking.runs import step_context

    try:
        version = workspace.resolve(ref)
        context = step_context(
            cascade_id=cascade_id, flow_run_id=flow_run_id, image_digest=version.image_digest
        )
        queue_derive(workspace, version, context)
    except (LineageError, OSError) as exc:
        return f"MLflow: {exc}"
    return ""


def track_tests(workspace: Workspace, ref: str, *, cascade_id: str, flow_run_id: str | None) -> str:
    """Queue the test step's MLflow run (the version's newest results); returns "" or
    a one-line warning."""
    from lineage.tracking import queue_tests
    from lineage.tracking.runs import step_context

    try:
        version = workspace.resolve(ref)
        results = list(workspace.graph.latest_results(version.id).values())
        context = step_context(cascade_id=cascade_id, flow_run_id=flow_run_id)
        queue_tests(workspace, version, results, context)
    except (LineageError, OSError) as exc:
        return f"MLflow: {exc}"
    return ""
