"""Model tests in a workspace: declare, override, opt out, resolve, run, bisect.

A test declared on a model applies to every version of it and, by inheritance, to
every model derived from it — unless a model nearer in the lineage declares a test
of the same name (override) or an opt-out (`disable_test`). The nearest declaration
wins: the version's own model first, then its ancestors' models, nearest first. The
same resolution serves `lineage test`, the promotion gate and the lossy guard.

>>> declare_model_test(ws, "base", "small", "size", {"max_bytes": 10_000_000}).name
'small'
>>> [t.declared_on for t in resolve_tests(ws, "ft@1")]
['base']
>>> run_tests(ws, "ft@1").passed
True
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lineage.errors import ModelTestError
from lineage.records import StoredTestResult, VersionInfo, utc_now

if TYPE_CHECKING:
    from lineage.modeltests import TestDeclaration, TestOutcome
    from lineage.workspace import Workspace


@dataclass
class ResolvedTest:
    """A test that applies to a version, and where its declaration comes from."""

    __test__ = False
    declaration: TestDeclaration
    declared_on: str  # model name
    inherited: bool
    overrides: list[str] = field(default_factory=list)  # farther models it shadows

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.declaration.to_dict(),
            "declared_on": self.declared_on,
            "inherited": self.inherited,
            "overrides": self.overrides,
        }


@dataclass
class TestReport:
    """Results of `run_tests`: one outcome per applicable test."""

    __test__ = False
    ref: str
    results: list[TestOutcome]
    declared_on: dict[str, str]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failed(self) -> list[str]:
        return [r.name for r in self.results if not r.passed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "passed": self.passed,
            "results": [
                {**r.to_dict(), "declared_on": self.declared_on.get(r.name, "")}
                for r in self.results
            ],
        }


@dataclass
class BisectResult:
    """Where along `chain` (oldest first) the test first fails; None if nowhere."""

    test: str
    ref: str
    chain: list[str]
    first_failing: str | None
    last_passing: str | None
    checked: dict[str, dict[str, Any]]  # ref -> {"passed", "value", "source": stored|ran}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------- declaring
def declare_model_test(
    workspace: Workspace, model: str, name: str, kind: str, params: dict[str, Any] | None = None
) -> TestDeclaration:
    """Declare (or redeclare) test `name` on `model`; overrides an inherited one of
    the same name. Validated first: a bad declaration stores nothing."""
    from lineage.modeltests import declare_test

    _check_user_code(workspace, kind, params or {})
    decl = declare_test(name, kind, params)
    workspace.graph.upsert_test(model, decl.name, decl.kind, dict(decl.params), disabled=False)
    return decl


def disable_test(workspace: Workspace, model: str, name: str) -> None:
    """Opt `model` (and what derives from it) out of the inherited test `name`."""
    from lineage.modeltests import validate_test_name

    workspace.graph.upsert_test(model, validate_test_name(name), "disabled", {}, disabled=True)


def remove_test(workspace: Workspace, model: str, name: str) -> None:
    """Delete `model`'s own declaration or opt-out of `name` (inherited ones stay)."""
    workspace.graph.delete_test(model, name)


# ---------------------------------------------------------------- resolving
def model_chain(workspace: Workspace, model: str, parent_ids: Sequence[int]) -> list[str]:
    """`model`, then the models of the versions it derives from (the parents and their
    ancestors), nearest first: the order in which declarations are looked up."""
    order = workspace.graph.ancestor_ids(list(parent_ids), include_roots=True)
    chain = [model]
    for ancestor in reversed(workspace.versions_by_id(order)):  # nearest first
        if ancestor.model not in chain:
            chain.append(ancestor.model)
    return chain


def version_chain(workspace: Workspace, version: VersionInfo) -> list[str]:
    return model_chain(
        workspace, version.model, [link.version_id for link in version.derivation_parents]
    )


def resolve_tests(workspace: Workspace, ref: str) -> list[ResolvedTest]:
    """The tests that apply to `ref`, each with the model it is declared on."""
    return resolve_tests_along(workspace, version_chain(workspace, workspace.resolve(ref)))


def _check_user_code(workspace: Workspace, kind: str, params: dict[str, Any]) -> None:
    """A `user` test names `module:function` code: run it only from trusted modules
    (declarations live in the graph DB, which others can write)."""
    if kind == "user":
        from lineage.ops.code import check_trusted

        check_trusted(workspace, str(params.get("ref", "")), "test")


def resolve_tests_along(workspace: Workspace, chain: list[str]) -> list[ResolvedTest]:
    """Resolve declarations along a model chain (the model itself first, then its
    lineage, nearest first): the nearest declaration of a name wins, and an opt-out
    hides an inherited test from that model down."""
    from lineage.modeltests import TestDeclaration

    by_model: dict[str, list[Any]] = {}
    for row in workspace.graph.test_declarations(chain):
        by_model.setdefault(row.model, []).append(row)
    chosen: dict[str, ResolvedTest | None] = {}
    for model in chain:
        for row in sorted(by_model.get(model, []), key=lambda r: r.name):
            if row.name in chosen:
                nearer = chosen[row.name]
                if nearer is not None:
                    nearer.overrides.append(model)
                continue
            if row.disabled:
                chosen[row.name] = None
                continue
            _check_user_code(workspace, row.kind, row.params)  # before it is imported
            chosen[row.name] = ResolvedTest(
                TestDeclaration(name=row.name, kind=row.kind, params=dict(row.params)),
                declared_on=model,
                inherited=model != chain[0],
            )
    return [r for _, r in sorted(chosen.items()) if r is not None]


def describe_tests(workspace: Workspace, ref: str) -> list[dict[str, Any]]:
    """For `lineage show`: each applicable test, where it comes from, its latest result."""
    version = workspace.resolve(ref)
    stored = workspace.graph.latest_results(version.id)
    out = []
    for test in resolve_tests(workspace, version.ref):
        item = test.to_dict()
        result = stored.get(test.declaration.name)
        item["latest"] = (
            None
            if result is None
            else {
                "metric": result.metric,
                "value": result.value,
                "threshold": result.threshold,
                "passed": result.passed,
                "duration_s": result.duration_s,
                "ran_at": result.ran_at.isoformat(),
            }
        )
        out.append(item)
    return out


# ---------------------------------------------------------------- running
def record_outcome(
    workspace: Workspace, version_id: int, outcome: TestOutcome, declared_on: str
) -> None:
    """Store one test outcome as the newest result of that test on the version."""
    workspace.graph.record_test_result(
        version_id,
        StoredTestResult(
            test_name=outcome.name,
            kind=outcome.kind,
            declared_on=declared_on,
            metric=outcome.metric,
            value=outcome.value,
            threshold=outcome.threshold,
            passed=outcome.passed,
            details=outcome.details,
            duration_s=outcome.duration_s,
            ran_at=utc_now(),
        ),
    )


def _run_on_version(
    workspace: Workspace,
    version: VersionInfo,
    tests: list[tuple[TestDeclaration, str]],
    data: str | None,
) -> list[TestOutcome]:
    """Check the version (and its first parent) out, run `tests`, store each result."""
    from lineage.modeltests import run_model_test
    from lineage.ops.checkout import checkout

    if not tests:
        return []

    data = data or (version.extra or {}).get("data")
    parents = version.derivation_parents
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="lineage-test-") as tmp:
        model_dir = checkout(workspace, version.ref, Path(tmp) / "model")
        parent_dir = checkout(workspace, parents[0].ref, Path(tmp) / "parent") if parents else None
        for decl, declared_on in tests:
            outcome = run_model_test(decl, model_dir, parent_dir, data)
            record_outcome(workspace, version.id, outcome, declared_on)
            outcomes.append(outcome)
    return outcomes


def run_tests(
    workspace: Workspace, ref: str, *, data: str | None = None, only: list[str] | None = None
) -> TestReport:
    """Run every test that applies to `ref` (or those named in `only`); store results.

    `data` is used by tests that do not name their own data set; by default it is the
    data set the version was made with.
    """
    version = workspace.resolve(ref)
    resolved = resolve_tests(workspace, version.ref)
    if only:
        unknown = sorted(set(only) - {r.declaration.name for r in resolved})
        if unknown:
            raise ModelTestError(f"{version.ref} has no test(s) {', '.join(unknown)}")
        resolved = [r for r in resolved if r.declaration.name in only]
    outcomes = _run_on_version(
        workspace, version, [(r.declaration, r.declared_on) for r in resolved], data
    )
    from lineage.tracking.mirror import queue_tests

    queue_tests(workspace, version, outcomes)  # an MLflow test run, off this command's path
    return TestReport(version.ref, outcomes, {r.declaration.name: r.declared_on for r in resolved})


# ---------------------------------------------------------------- bisect
def provenance_chain(workspace: Workspace, ref: str) -> list[VersionInfo]:
    """`ref` and its first-parent ancestors, oldest first (git's first-parent history)."""
    chain = [workspace.resolve(ref)]
    seen = {chain[0].id}
    while chain[-1].derivation_parents:
        parent = workspace.resolve(chain[-1].derivation_parents[0].ref)
        if parent.id in seen:
            break
        seen.add(parent.id)
        chain.append(parent)
    return list(reversed(chain))


def bisect(workspace: Workspace, test: str, ref: str, *, data: str | None = None) -> BisectResult:
    """Name the first version along `ref`'s provenance chain where `test` fails.

    Binary search, as `git bisect`, assuming a version fails once an ancestor does;
    a stored result of the same test kind is used instead of re-running. The test is
    the one declared for `ref` (its params are used for every version checked).
    """
    target = workspace.resolve(ref)
    match = [r for r in resolve_tests(workspace, target.ref) if r.declaration.name == test]
    if not match:
        raise ModelTestError(f"{target.ref} has no test {test!r}")
    decl, declared_on = match[0].declaration, match[0].declared_on
    chain = provenance_chain(workspace, target.ref)
    checked: dict[str, dict[str, Any]] = {}

    def passes(version: VersionInfo) -> bool:
        stored = workspace.graph.latest_results(version.id).get(test)
        if stored is not None and stored.kind == decl.kind:
            checked[version.ref] = {
                "passed": stored.passed,
                "value": stored.value,
                "source": "stored",
            }
        else:
            outcome = _run_on_version(workspace, version, [(decl, declared_on)], data)[0]
            checked[version.ref] = {
                "passed": outcome.passed,
                "value": outcome.value,
                "source": "ran",
            }
        return bool(checked[version.ref]["passed"])

    refs = [v.ref for v in chain]
    if passes(chain[-1]):
        return BisectResult(test, target.ref, refs, None, target.ref, checked)
    lo, hi = 0, len(chain) - 1  # invariant: chain[hi] fails; everything before lo passes
    while lo < hi:
        mid = (lo + hi) // 2
        if passes(chain[mid]):
            lo = mid + 1
        else:
            hi = mid
    return BisectResult(test, target.ref, refs, refs[hi], refs[hi - 1] if hi > 0 else None, checked)
