"""The lossy mode's guard: approximate weights are kept only if the tests say so.

`lineage add/commit --lossy` asks for quantized deltas with a stated error bound. That
is only safe when the version still behaves like itself, so `guarded_ingest`:

1. finds every test that will apply to the new version (inherited down the lineage by
   the same rules as `lineage.api.testing.resolve_tests`, plus the model's own for a
   commit) — with none, nothing can vouch for approximate weights: stored lossless;
2. ingests the weights lossily and checks the approximate copy out to a temp dir;
3. runs every test on the exact source and on the approximate copy;
4. keeps the lossy manifest only if every test passes on the approximate weights and
   each metric is within `tolerance` of the exact weights' metric; otherwise ingests
   losslessly.

The decision (accepted or not, why, the bound, and each test's metric on the exact
and the approximate weights) is returned as a `LossyDecision`, which the workspace
stores in the version's provenance as ``extra["lossy"]``. A rejected attempt leaves
its approximate objects unreferenced; `lineage store gc` removes them.

>>> options = lossy_options(1e-4)
>>> manifest, decision = guarded_ingest(ws, "ft", Path("ft/"), [ws.resolve("base@1")],
...                                     options)  # doctest: +SKIP
>>> decision.accepted, manifest.approximate  # doctest: +SKIP
(True, True)
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lineage.errors import LineageError, UsageError
from lineage.records import VersionInfo

if TYPE_CHECKING:
    from lineage.api.testing import ResolvedTest
    from lineage.store import LossyOptions, Manifest
    from lineage.workspace import Workspace

log = logging.getLogger(__name__)

#: the default largest allowed |approximate metric - exact metric| (0.01 = one point).
DEFAULT_TOLERANCE = 0.01
#: kinds whose metric measures bytes or time, not what the weights compute: they must
#: still pass on the approximate copy, but their values are not compared.
VALUE_BLIND_KINDS = frozenset({"size", "latency"})


@dataclass
class TestComparison:
    """One test on the exact and on the approximate weights."""

    __test__ = False  # not a pytest class
    name: str
    kind: str
    declared_on: str
    metric: str | None = None
    exact: float | None = None
    approximate: float | None = None
    threshold: float | None = None
    passed_exact: bool | None = None
    passed_approximate: bool | None = None
    compared: bool = True  # False for kinds whose value ignores the weights' values
    within_tolerance: bool | None = None
    error: str | None = None  # the test could not run

    @property
    def ok(self) -> bool:
        """The approximate weights pass and stay within the tolerance."""
        return (
            self.error is None
            and bool(self.passed_approximate)
            and (not self.compared or bool(self.within_tolerance))
        )


@dataclass
class LossyDecision:
    """Whether a version's lossy copy was kept, and the evidence (stored in provenance)."""

    accepted: bool
    reason: str
    max_abs_error: float
    min_elements: int
    tolerance: float
    approximate_tensors: int = 0
    measured_max_abs_error: float | None = None
    tests: list[TestComparison] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@contextmanager
def approximate_warning_silenced() -> Iterator[None]:
    """Mute the store's "weights are approximate" log line, for callers that already
    know (the guard) or say it themselves (the CLI)."""
    store_log = logging.getLogger("lineage.store.checkout")
    level = store_log.level
    store_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        store_log.setLevel(level)


def lossy_options(max_abs_error: float, min_elements: int | None = None) -> LossyOptions:
    """`LossyOptions` from user input; `UsageError` (one line) for a bad bound."""
    from lineage.store import LossyOptions

    if isinstance(max_abs_error, bool) or not isinstance(max_abs_error, int | float):
        raise UsageError(f"--max-error must be a number, got {max_abs_error!r}")
    if not math.isfinite(max_abs_error) or max_abs_error <= 0:
        raise UsageError(f"--max-error must be a positive, finite number, got {max_abs_error!r}")
    if min_elements is None:
        return LossyOptions(max_abs_error=float(max_abs_error))
    if min_elements < 1:
        raise UsageError(f"min_elements must be at least 1, got {min_elements!r}")
    return LossyOptions(max_abs_error=float(max_abs_error), min_elements=int(min_elements))


def check_lossy_request(lossy: Any, tolerance: float) -> None:
    """Validate a lossy request before anything is written (`UsageError` if bad)."""
    from lineage.store import LossyOptions

    if not isinstance(lossy, LossyOptions):
        raise UsageError(f"lossy must be LossyOptions, got {type(lossy).__name__}")
    lossy_options(lossy.max_abs_error, lossy.min_elements)
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float):
        raise UsageError(f"--lossy-tolerance must be a number, got {tolerance!r}")
    if not math.isfinite(tolerance) or tolerance < 0:
        raise UsageError(f"--lossy-tolerance must be a finite number >= 0, got {tolerance!r}")


def applicable_tests(
    workspace: Workspace, name: str, parents: Sequence[VersionInfo]
) -> list[ResolvedTest]:
    """The tests a new version of `name` derived from `parents` will have.

    The same rules as `resolve_tests` (nearest declaration wins; an opt-out hides an
    inherited test), applied before the version exists: the model's own declarations
    (none yet for a new model), then those of its parents' lineage, nearest first.
    """
    from lineage import graph
    from lineage.api.testing import resolve_tests_along
    from lineage.db import schema as t

    with workspace.engine.connect() as conn:
        ids = {p.id for p in parents}
        for parent in parents:
            ids.update(graph.ancestor_ids(conn, parent.id, (t.DERIVATION,)))
        order = graph.topological_order(ids, graph.edges_among(conn, ids, (t.DERIVATION,)))
    # (one connection at a time: a SQLite workspace begins every one with a write lock)
    chain = [name]
    for ancestor in reversed(workspace.versions_by_id(order)):  # nearest first
        if ancestor.model not in chain:
            chain.append(ancestor.model)
    return resolve_tests_along(workspace, chain)


def guarded_ingest(
    workspace: Workspace,
    name: str,
    source: Path,
    parents: Sequence[VersionInfo],
    lossy: LossyOptions,
    tolerance: float = DEFAULT_TOLERANCE,
    *,
    data: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    rematerialize: Callable[[Path], None] | None = None,
    derivation_spec: dict[str, Any] | None = None,
) -> tuple[Manifest, LossyDecision]:
    """Ingest `source` lossily if its tests allow it, else losslessly (see the module).

    `data` is given to tests that name no data set of their own. Returns the manifest
    to store (not yet stored) and the decision to record.
    """
    from lineage.store import ingest

    check_lossy_request(lossy, tolerance)
    decision = LossyDecision(
        accepted=False,
        reason="",
        max_abs_error=lossy.max_abs_error,
        min_elements=lossy.min_elements,
        tolerance=float(tolerance),
    )
    store = workspace.store
    bases = [store.get_manifest(p.manifest_id) for p in parents]
    kwargs: dict[str, Any] = {"parents": bases, "progress": progress}
    if rematerialize is not None:
        kwargs |= {"rematerialize": rematerialize, "derivation_spec": derivation_spec}

    tests = applicable_tests(workspace, name, parents)
    if not tests:
        decision.reason = (
            "no test applies to this version, so nothing can vouch for approximate "
            "weights: stored lossless (declare a test on it or an ancestor)"
        )
        log.info("%s: lossy mode refused: %s", name, decision.reason)
        return ingest(store, source, **kwargs), decision

    # The store's shared lock is held until the chosen manifest is returned: the approximate
    # objects are referenced by no stored manifest while the tests run, and a concurrent
    # gc must not take them away however long the tests take.
    with store.lock(exclusive=False):
        approx = ingest(store, source, lossy=lossy, **kwargs)
        if not approx.approximate:
            # nothing was approximated (a derivable version, or no large float tensor
            # that quantizes): the manifest is exactly what a lossless ingest gives
            approx.lossy = None
            decision.reason = "no tensor was approximated: stored exactly"
            return approx, decision
        assert approx.lossy is not None
        decision.approximate_tensors = int(approx.lossy.get("approximate_tensors", 0))
        decision.measured_max_abs_error = float(approx.lossy.get("measured_max_abs_error", 0.0))
        _run_guard_tests(workspace, name, approx, source, parents, tests, decision, data)
        failing = [c for c in decision.tests if not c.ok]
        if not failing:
            decision.accepted = True
            decision.reason = (
                f"all {len(decision.tests)} test(s) pass on the approximate weights, "
                f"each metric within {tolerance:g} of its value on the exact weights"
            )
            return approx, decision
    decision.reason = "stored lossless: " + "; ".join(_why(c, tolerance) for c in failing)
    log.info("%s: lossy copy rejected, %s", name, decision.reason)
    return ingest(store, source, **kwargs), decision


def _run_guard_tests(
    workspace: Workspace,
    name: str,
    approx: Manifest,
    source: Path,
    parents: Sequence[VersionInfo],
    tests: list[ResolvedTest],
    decision: LossyDecision,
    data: str | None,
) -> None:
    """Check the approximate copy out and run every test on it and on the exact source."""
    from lineage.store import checkout

    with (
        tempfile.TemporaryDirectory(prefix="lineage-lossy-") as tmp_name,
        approximate_warning_silenced(),
    ):
        tmp = Path(tmp_name)
        exact_dir = _as_model_dir(source, tmp / "exact")
        approx_dir = tmp / "approximate"
        store = workspace.store
        checkout(store, approx, approx_dir, materialize=workspace.materialize, label=name)
        parent_dir = workspace.checkout(parents[0].ref, tmp / "parent") if parents else None
        for test in tests:
            decision.tests.append(
                _compare(test, exact_dir, approx_dir, parent_dir, data, decision.tolerance)
            )


def _as_model_dir(source: Path, scratch: Path) -> Path:
    """`source` as a directory the tests can load (a lone file gets a folder of its own,
    under the name checkout gives it)."""
    if source.is_dir():
        return source
    scratch.mkdir(parents=True)
    link = scratch / source.name
    try:
        os.symlink(source.resolve(), link)
    except OSError:
        shutil.copyfile(source, link)
    return scratch


def _compare(
    test: ResolvedTest,
    exact_dir: Path,
    approx_dir: Path,
    parent_dir: Path | None,
    data: str | None,
    tolerance: float,
) -> TestComparison:
    from lineage.modeltests import run_model_test

    decl = test.declaration
    found = TestComparison(decl.name, decl.kind, test.declared_on)
    found.compared = decl.kind not in VALUE_BLIND_KINDS
    try:
        exact = run_model_test(decl, exact_dir, parent_dir, data)
        approx = run_model_test(decl, approx_dir, parent_dir, data)
    except LineageError as exc:  # a test that cannot run vouches for nothing
        found.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return found
    found.metric = approx.metric
    found.exact, found.approximate = exact.value, approx.value
    found.threshold = approx.threshold
    found.passed_exact, found.passed_approximate = exact.passed, approx.passed
    if found.compared:
        if exact.value is None or approx.value is None:
            found.within_tolerance = exact.value == approx.value
        else:
            found.within_tolerance = abs(approx.value - exact.value) <= tolerance + 1e-12
    return found


def _why(c: TestComparison, tolerance: float) -> str:
    if c.error is not None:
        return f"test {c.name!r} could not run ({c.error})"
    if not c.passed_approximate:
        return (
            f"test {c.name!r} fails on the approximate weights ({c.metric}={_fmt(c.approximate)})"
        )
    return (
        f"test {c.name!r} moved by more than {tolerance:g} "
        f"({c.metric} {_fmt(c.exact)} exact, {_fmt(c.approximate)} approximate)"
    )


def _fmt(value: float | None) -> str:
    return "none" if value is None else f"{value:.4g}"
