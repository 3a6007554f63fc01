"""Model tests in a workspace: declare, override, opt out, run, store, bisect.

A test declared on a model applies to every version of it and, by inheritance, to
every model derived from it — unless a model nearer in the lineage declares a test
of the same name (override) or an opt-out row (`disable_test`). The nearest
declaration wins: the version's own model first, then its ancestors' models,
nearest first (the same rule `lineage.api.promote` gates on).

>>> acc = {"threshold": 0.8, "dataset": "sentiment"}
>>> declare_model_test(ws, "base", "acc", "accuracy", acc)  # doctest: +SKIP
>>> run_tests(ws, "sentiment@2").passed          # doctest: +SKIP
True
>>> bisect(ws, "acc", "sentiment-int8@3").first_failing   # doctest: +SKIP
'sentiment@2'
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, select

from lineage.db import schema as t
from lineage.errors import ModelTestError
from lineage.modeltests import TestDeclaration, TestOutcome, declare_test
from lineage.records import VersionInfo

if TYPE_CHECKING:
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
def _model_id(conn: Any, name: str) -> int:
    row = conn.execute(select(t.models.c.id).where(t.models.c.name == name)).first()
    if row is None:
        from lineage.errors import ModelNotFoundError

        raise ModelNotFoundError(f"unknown model {name!r}")
    return int(row.id)


def _upsert(
    workspace: Workspace, model: str, name: str, kind: str, params: dict[str, Any], disabled: bool
) -> None:
    with workspace.engine.begin() as conn:
        model_id = _model_id(conn, model)
        where = and_(t.model_tests.c.model_id == model_id, t.model_tests.c.name == name)
        values = {"kind": kind, "params": params, "disabled": disabled}
        if conn.execute(select(t.model_tests.c.id).where(where)).first():
            conn.execute(t.model_tests.update().where(where).values(**values))
        else:
            conn.execute(
                t.model_tests.insert().values(
                    model_id=model_id, name=name, created_at=datetime.now(UTC), **values
                )
            )


def declare_model_test(
    workspace: Workspace, model: str, name: str, kind: str, params: dict[str, Any] | None = None
) -> TestDeclaration:
    """Declare (or redeclare) test `name` on `model`; overrides an inherited one of
    the same name. Validated first: a bad declaration stores nothing."""
    decl = declare_test(name, kind, params)
    _upsert(workspace, model, decl.name, decl.kind, dict(decl.params), disabled=False)
    return decl


def disable_test(workspace: Workspace, model: str, name: str) -> None:
    """Opt `model` (and what derives from it) out of the inherited test `name`."""
    declare_test(name, "size", {"max_bytes": 1})  # validates the name only
    _upsert(workspace, model, name, "disabled", {}, disabled=True)


def remove_test(workspace: Workspace, model: str, name: str) -> None:
    """Delete `model`'s own declaration or opt-out of `name` (inherited ones stay)."""
    with workspace.engine.begin() as conn:
        model_id = _model_id(conn, model)
        deleted = conn.execute(
            t.model_tests.delete().where(
                and_(t.model_tests.c.model_id == model_id, t.model_tests.c.name == name)
            )
        ).rowcount
    if not deleted:
        raise ModelTestError(f"model {model!r} declares no test {name!r}")


# ---------------------------------------------------------------- resolving
def _model_chain(workspace: Workspace, version: VersionInfo) -> list[str]:
    chain = [version.model]
    for ancestor in reversed(workspace.ancestors(version.ref)):  # nearest first
        if ancestor.model not in chain:
            chain.append(ancestor.model)
    return chain


def resolve_tests(workspace: Workspace, ref: str) -> list[ResolvedTest]:
    """The tests that apply to `ref`, each with the model it is declared on."""
    version = workspace.resolve(ref)
    return resolve_tests_along(workspace, _model_chain(workspace, version))


def resolve_tests_along(workspace: Workspace, chain: list[str]) -> list[ResolvedTest]:
    """Resolve declarations along a model chain (the model itself first, then its
    lineage, nearest first): the nearest declaration of a name wins, and an opt-out
    hides an inherited test from that model down."""
    with workspace.engine.connect() as conn:
        rows = conn.execute(
            select(
                t.models.c.name.label("model"),
                t.model_tests.c.name,
                t.model_tests.c.kind,
                t.model_tests.c.params,
                t.model_tests.c.disabled,
            )
            .join(t.models, t.models.c.id == t.model_tests.c.model_id)
            .where(t.models.c.name.in_(chain))
        ).all()
    by_model: dict[str, list[Any]] = {}
    for row in rows:
        by_model.setdefault(row.model, []).append(row)
    chosen: dict[str, ResolvedTest | None] = {}
    for model in chain:
        for row in sorted(by_model.get(model, []), key=lambda r: r.name):
            if row.name in chosen:
                if chosen[row.name] is not None:
                    chosen[row.name].overrides.append(model)  # type: ignore[union-attr]
                continue
            if row.disabled:
                chosen[row.name] = None
                continue
            chosen[row.name] = ResolvedTest(
                TestDeclaration(name=row.name, kind=row.kind, params=dict(row.params or {})),
                declared_on=model,
                inherited=model != chain[0],
            )
    return [r for _, r in sorted(chosen.items()) if r is not None]


def latest_results(workspace: Workspace, version_id: int) -> dict[str, dict[str, Any]]:
    """Newest stored result of each test of a version."""
    with workspace.engine.connect() as conn:
        rows = conn.execute(
            select(t.test_results)
            .where(t.test_results.c.version_id == version_id)
            .order_by(t.test_results.c.ran_at, t.test_results.c.id)
        ).all()
    return {row.test_name: dict(row._mapping) for row in rows}


def describe_tests(workspace: Workspace, ref: str) -> list[dict[str, Any]]:
    """For `lineage show`: each applicable test, where it comes from, its latest result."""
    version = workspace.resolve(ref)
    stored = latest_results(workspace, version.id)
    out = []
    for test in resolve_tests(workspace, version.ref):
        item = test.to_dict()
        res = stored.get(test.declaration.name)
        item["latest"] = (
            None
            if res is None
            else {k: res[k] for k in ("metric", "value", "threshold", "passed", "duration_s")}
            | {"ran_at": res["ran_at"].isoformat() if res["ran_at"] else None}
        )
        out.append(item)
    return out


# ---------------------------------------------------------------- running
def _store(workspace: Workspace, version_id: int, outcome: TestOutcome, declared_on: str) -> None:
    with workspace.engine.begin() as conn:
        conn.execute(
            t.test_results.insert().values(
                version_id=version_id,
                test_name=outcome.name,
                kind=outcome.kind,
                declared_on=declared_on,
                metric=outcome.metric,
                value=outcome.value,
                threshold=outcome.threshold,
                passed=outcome.passed,
                details=outcome.details,
                duration_s=outcome.duration_s,
                ran_at=datetime.now(UTC),
            )
        )


def _run_on_version(
    workspace: Workspace,
    version: VersionInfo,
    tests: list[tuple[TestDeclaration, str]],
    data: str | None,
) -> list[TestOutcome]:
    """Check the version (and its first parent) out, run `tests`, store each result."""
    if not tests:
        return []
    from lineage.modeltests import run_model_test  # imports torch: only to run tests

    data = data or (version.extra or {}).get("data")
    parents = version.derivation_parents
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="lineage-test-") as tmp:
        model_dir = workspace.checkout(version.ref, Path(tmp) / "model")
        parent_dir = workspace.checkout(parents[0].ref, Path(tmp) / "parent") if parents else None
        for decl, declared_on in tests:
            outcome = run_model_test(decl, model_dir, parent_dir, data)
            _store(workspace, version.id, outcome, declared_on)
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
        stored = latest_results(workspace, version.id).get(test)
        if stored is not None and stored["kind"] == decl.kind:
            checked[version.ref] = {
                "passed": bool(stored["passed"]),
                "value": stored["value"],
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
