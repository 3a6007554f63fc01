"""One cascade node's work, without Prefect: derive (or find it done), test, gate.

Each function is idempotent, so a resumed cascade can call them again on a node a
crashed run had finished: `derive_node` finds the committed version in the derive
cache, `gate_node` leaves aliases that already point at the version alone.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from lineage.cascade import cache
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

if TYPE_CHECKING:
    from lineage.cascade.plan import PlanNode
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
# Step exit codes (tasks.step) that mean "the step's input is wrong", not "bad luck".
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
class DeriveOutcome:
    """What deriving one node gave: the new version, and whether it was already done."""

    model: str
    old_ref: str
    new_ref: str
    version_id: int
    parents: list[str]
    cached: bool
    already_gated: bool
    cache_key: str
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TestOutcome:
    """The node's own and inherited tests on its new version."""

    __test__ = False  # not a pytest class

    ref: str
    passed: bool
    total: int
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    skipped: bool = False  # the node was gated by an earlier run: tests not re-run

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GateOutcome:
    """Which aliases moved to the new version."""

    ref: str
    passed: bool
    aliases: list[str]  # moved to `ref` by this gate
    promoted: bool
    note: str = ""
    holds: list[str] = field(default_factory=list)  # every alias on `ref` afterwards

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def node_cache_key(node: PlanNode, parent_refs: Sequence[str]) -> str:
    return cache.cache_key(
        node.model, node.recipe_id, node.recipe_params, parent_refs, node.data_fingerprint
    )


def derive_node(
    workspace: Workspace,
    node: PlanNode,
    parent_refs: Sequence[str],
    *,
    runner: Any = None,
    message: str = "",
) -> DeriveOutcome:
    """Re-derive `node` on `parent_refs` and commit it, unless that was already done.

    The commit (by `lineage.api.derive.rederive`) records the node's next version
    with derivation edges to `parent_refs` and a versioning edge from the old one.
    """
    started = time.perf_counter()
    key = node_cache_key(node, parent_refs)
    found = cache.lookup(workspace, key)
    if found is None:
        found = cache.find_existing(
            workspace,
            node.model,
            node.recipe_id,
            node.recipe_params,
            parent_refs,
            node.data_fingerprint,
        )
        if found is not None:  # committed by a run that died before caching it
            cache.remember(workspace, key, found.id)
    if found is not None:
        return DeriveOutcome(
            model=node.model,
            old_ref=node.old_ref,
            new_ref=found.ref,
            version_id=found.id,
            parents=list(parent_refs),
            cached=True,
            already_gated=bool({"candidate", "champion"} & set(found.aliases)),
            cache_key=key,
            seconds=time.perf_counter() - started,
        )
    from lineage.api.derive import rederive

    version = rederive(
        workspace,
        node.old_ref,
        list(parent_refs),
        runner=runner,
        message=message or f"cascade: re-derived on {', '.join(parent_refs)}",
    )
    cache.remember(workspace, key, version.id)
    return DeriveOutcome(
        model=node.model,
        old_ref=node.old_ref,
        new_ref=version.ref,
        version_id=version.id,
        parents=list(parent_refs),
        cached=False,
        already_gated=False,
        cache_key=key,
        seconds=time.perf_counter() - started,
    )


def test_node(workspace: Workspace, ref: str) -> TestOutcome:
    """Run the version's own and inherited tests (results are stored by `run_tests`)."""
    from lineage.api.testing import run_tests

    started = time.perf_counter()
    report = run_tests(workspace, ref)
    results = list(getattr(report, "results", None) or [])
    failed = [
        str(getattr(r, "name", None) or getattr(r, "test_name", "?"))
        for r in results
        if not getattr(r, "passed", True)
    ]
    return TestOutcome(
        ref=ref,
        passed=bool(report.passed),
        total=len(results),
        failed=failed,
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
    """Gate `ref` (see `_gate`) and report every alias it holds afterwards."""
    outcome = _gate(workspace, ref, passed, reason=reason, actor=actor, track=track)
    outcome.holds = sorted(workspace.resolve(ref).aliases) if passed else []
    return outcome


def _gate(
    workspace: Workspace,
    ref: str,
    passed: bool,
    *,
    reason: str,
    actor: str = CASCADE_ACTOR,
    track: bool = True,
) -> GateOutcome:
    """On a pass: `candidate`, then `champion` when the model promotes automatically.

    Promotion goes through `lineage.api.promote.promote` when tracking is on (it checks
    the stored test results, makes the old champion `previous`, consumes `candidate`
    and mirrors everything to MLflow in one step); without tracking the aliases move
    in the lineage DB only. Alias changes are recorded with `actor` and `reason`;
    aliases already on `ref` are left alone, so gating twice records nothing new.
    A model whose promotion is refused (approval required, no test results) stays
    `candidate`, with the reason in `note`.
    """
    if not passed:
        return GateOutcome(ref=ref, passed=False, aliases=[], promoted=False)
    version = workspace.resolve(ref)
    model = workspace.model(version.model)
    moved: list[str] = []
    if "champion" in version.aliases:
        return GateOutcome(ref=ref, passed=True, aliases=[], promoted=True)
    if "candidate" not in version.aliases:
        workspace.set_alias(ref, "candidate", action="set", actor=actor, reason=reason)
        moved.append("candidate")
    if model.require_approval:
        return GateOutcome(
            ref=ref,
            passed=True,
            aliases=moved,
            promoted=False,
            note="promotion needs approval (promotion flow)",
        )
    if not model.auto_promote:
        return GateOutcome(ref=ref, passed=True, aliases=moved, promoted=False)
    if track and tracking_available():
        from lineage.api.promote import promote

        try:
            result = promote(workspace, ref, actor=actor, reason=reason)
        except PromotionError as exc:
            return GateOutcome(ref=ref, passed=True, aliases=moved, promoted=False, note=str(exc))
        moved += [event.alias for event in result.events if event.alias not in moved]
        return GateOutcome(ref=ref, passed=True, aliases=moved, promoted=True)
    # Without MLflow, the same rule as `promote`: every applicable test has a passing
    # result (a version with no tests at all proves nothing and stays candidate).
    try:
        from lineage.api.promote import check_tests_passed
    except ImportError:  # promotion layer not in this build: the tests just passed
        pass
    else:
        try:
            check_tests_passed(workspace, version, what=f"cannot promote {ref}")
        except PromotionError as exc:
            return GateOutcome(ref=ref, passed=True, aliases=moved, promoted=False, note=str(exc))
    old_champion = model.aliases.get("champion")
    if old_champion is not None and old_champion != version.number:
        workspace.set_alias(
            f"{version.model}@{old_champion}",
            "previous",
            action="promote",
            actor=actor,
            reason=reason,
        )
        moved.append("previous")
    workspace.set_alias(ref, "champion", action="promote", actor=actor, reason=reason)
    moved.append("champion")
    return GateOutcome(ref=ref, passed=True, aliases=moved, promoted=True)


def tracking_available() -> bool:
    """Whether `lineage.tracking` (MLflow) is part of this build."""
    try:
        import lineage.tracking  # noqa: F401
    except ImportError:
        return False
    return True


def track_derive(
    workspace: Workspace, ref: str, *, cascade_id: str, flow_run_id: str | None
) -> str:
    """Record the derive step in MLflow; returns "" or a one-line warning.

    The lineage DB is the source of truth and `lineage sync mlflow` repairs MLflow,
    so an unreachable MLflow is reported, not fatal to the node.
    """
    if not tracking_available():
        return ""
    from lineage.tracking import record_derive

    version = workspace.resolve(ref)
    try:
        record_derive(
            workspace,
            version,
            cascade_id=cascade_id,
            flow_run_id=flow_run_id,
            image_digest=version.image_digest,
            metrics=(version.extra or {}).get("metrics") or None,
        )
    except LineageError as exc:
        return f"MLflow: {exc}"
    return ""


def track_tests(workspace: Workspace, ref: str, *, cascade_id: str, flow_run_id: str | None) -> str:
    """Record the test step in MLflow; returns "" or a one-line warning."""
    if not tracking_available():
        return ""
    from lineage.tracking import record_tests

    try:
        record_tests(
            workspace, workspace.resolve(ref), cascade_id=cascade_id, flow_run_id=flow_run_id
        )
    except LineageError as exc:
        return f"MLflow: {exc}"
    return ""
