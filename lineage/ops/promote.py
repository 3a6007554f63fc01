"""Gated promotion and lineage-aware rollback: the `promote` and `rollback` verbs.

Promotion moves `champion` to a version only when every test of that version
passed (newest result per test in `test_results`, and every test declared on the
model or inherited from its ancestors has a result); the old champion becomes
`previous`, and a `candidate` alias on the promoted version is consumed. Models with
`require_approval` are promoted only with an approver's name (the promotion flow
pauses for it in the Prefect UI).

Rollback moves `champion` back — to the previous champion by default, or to
`--to VERSION` — and, with `cascade=True`, also rolls back every descendant model
whose champion was derived (directly or not) from the rolled-back version, to its
most recent earlier champion that was not. Targets must exist and have passed their
tests. `previous` is restored to what it was when the target was last champion.

How each change reaches MLflow (`MlflowMirror`):

- `promote` and `rollback` (a person, the promotion flow): **atomic**. Every version that
  will carry an alias is registered in MLflow first (idempotent, under its lineage
  number; nothing moves yet); then one DB transaction writes the aliases and the
  `alias_events` rows (who, when, why, from → to) and, before it commits, the MLflow
  registry aliases are moved. If anything fails, the transaction rolls back and the
  MLflow aliases are put back as they were (compensation); should compensation itself
  fail (MLflow died mid-way), the error says so and `lineage sync mlflow` repairs MLflow
  from the DB. So whoever loads `models:/NAME@champion` after the command returns gets
  what lineage says serves — which matters most for a rollback. The whole step holds the
  workspace's MLflow mirror lock, so the background writer cannot re-read aliases half-way.
- the cascade's `gate`: **queued**. The DB moves; the registry aliases follow through the
  background writer (`lineage.tracking`), which always copies the DB's current aliases,
  so a slow tracking server does not hold a cascade and replays converge.
- the alias history reaches MLflow through the queue in both cases: one small run per
  recorded change in the model's experiment, written after the DB commits.

A successful promotion emits `lineage.model.promoted`, a rollback
`lineage.model.rolled_back` per model it moved (when a Prefect API is configured; a
failure to emit is a warning on the result, never an undone promotion).

`gate` is the rule the cascade applies to a re-derived version: a pass makes it
`candidate`, and `champion` (through `promote`) when its model promotes automatically.
Every alias move of promote, rollback and the gate goes through `_execute` here.

>>> from lineage.ops.tests import declare_model_test, run_tests
>>> _ = declare_model_test(ws, "base", "small", "size", {"max_bytes": 100_000_000})
>>> run_tests(ws, "ft@1").passed
True
>>> promote(ws, "ft@1", reason="first release", mlflow="off").to_version
1
>>> ws.model("ft").aliases
{'champion': 1}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from lineage.errors import (
    OrchestrationError,
    PromotionError,
    TrackingError,
    VersionNotFoundError,
)
from lineage.provenance import default_author
from lineage.records import AliasEvent, ModelInfo, VersionInfo
from lineage.tracking.events import PROMOTED_EVENT, ROLLED_BACK_EVENT

if TYPE_CHECKING:
    from lineage.graph.repo import GraphRepo
    from lineage.workspace import Workspace

CHAMPION = "champion"
PREVIOUS = "previous"
CANDIDATE = "candidate"
#: The serving aliases: moved only by this module's gate, promote and rollback.
GATED_ALIASES = frozenset({CHAMPION, PREVIOUS, CANDIDATE})

#: How an alias change reaches MLflow: with the DB in one all-or-nothing step, after
#: the DB commits through the background writer, or not now (`lineage sync mlflow`).
MlflowMirror = Literal["atomic", "queued", "off"]

# Test seam: called after each model's MLflow aliases moved, inside the DB
# transaction. Tests point it at something that fails, to prove nothing is left
# half-promoted; it is None in normal use.
_after_mlflow_move: Callable[[str], None] | None = None


@dataclass(frozen=True)
class AliasMove:
    """One planned alias change: point `alias` of `model` at `to_version` (None: remove)."""

    model: str
    alias: str
    to_version: int | None
    action: str
    reason: str


@dataclass
class PromotionResult:
    """What a promotion or rollback did: the alias events, per model."""

    action: str  # promote | rollback
    model: str
    from_version: int | None
    to_version: int
    events: list[AliasEvent] = field(default_factory=list)
    cascaded: dict[str, tuple[int, int]] = field(default_factory=dict)  # model -> (from, to)
    mlflow_aliases: dict[str, dict[str, str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # e.g. a Prefect event not sent

    @property
    def changed(self) -> bool:
        return bool(self.events)

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "model": self.model,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "changed": self.changed,
            "events": [event.to_dict() for event in self.events],
            "cascaded": {
                name: {"from_version": old, "to_version": new}
                for name, (old, new) in self.cascaded.items()
            },
            "mlflow_aliases": self.mlflow_aliases,
            "warnings": self.warnings,
        }


# ---------------------------------------------------------------------- the test gate
def declared_test_names(workspace: Workspace, version: VersionInfo) -> set[str]:
    """Tests that apply to `version` (declared on its model or inherited, as
    `lineage test` resolves them)."""
    from lineage.ops.tests import resolve_tests

    return {resolved.declaration.name for resolved in resolve_tests(workspace, version.ref)}


def check_tests_passed(workspace: Workspace, version: VersionInfo, *, what: str) -> None:
    """Refuse (`PromotionError`) unless every test that applies to `version` has a
    passing newest result. A version no test applies to is refused too — nothing vouches
    for it — unless its model's policy allows untested versions.

    `what` starts the message: "cannot promote sentiment@3", "cannot roll back to ...".
    """
    declared = declared_test_names(workspace, version)
    results = workspace.graph.latest_results(version.id)
    if not declared:
        if workspace.model(version.model).allow_untested:
            return
        found = "no test results" if not results else "only results of tests that no longer apply"
        raise PromotionError(
            f"{what}: no test applies to {version.ref} ({found}), so nothing vouches for it; "
            "declare a test on it or an ancestor, or allow untested versions with "
            f"`lineage policy {version.model} --allow-untested`"
        )
    if not results:
        raise PromotionError(
            f"{what}: {version.ref} has no test results (run `lineage test {version.ref}` first)"
        )
    failed = sorted(name for name in declared if name in results and not results[name].passed)
    if failed:
        raise PromotionError(
            f"{what}: {version.ref} failed {len(failed)} test(s): {', '.join(failed)}"
        )
    missing = sorted(declared - set(results))
    if missing:
        raise PromotionError(
            f"{what}: {version.ref} has not run test(s) {', '.join(missing)} "
            f"(run `lineage test {version.ref}`)"
        )


# ---------------------------------------------------------------------- policy
def set_model_policy(
    workspace: Workspace,
    name: str,
    *,
    auto_promote: bool | None = None,
    require_approval: bool | None = None,
    allow_untested: bool | None = None,
    description: str | None = None,
) -> ModelInfo:
    """Change how a model is promoted (automatically on a passing cascade, or gated by
    a human) and its description."""
    values: dict[str, Any] = {}
    if auto_promote is not None:
        values["auto_promote"] = auto_promote
    if require_approval is not None:
        values["require_approval"] = require_approval
    if allow_untested is not None:
        values["allow_untested"] = allow_untested
    if description is not None:
        values["description"] = description
    workspace.graph.set_model_policy(name, values)
    return workspace.model(name)


# ---------------------------------------------------------------------- promote
def promote(
    workspace: Workspace,
    ref: str,
    *,
    actor: str | None = None,
    reason: str = "",
    approved_by: str | None = None,
    mlflow: MlflowMirror = "atomic",
) -> PromotionResult:
    """Make `ref` the champion of its model if all its tests passed.

    Raises `PromotionError` (tests missing or failed, approval required) before
    anything changes, and `TrackingError` when MLflow cannot be reached (with the
    default `mlflow="atomic"`; see the module docstring for the other ways).
    """
    version = workspace.resolve(ref)
    what = f"cannot promote {version.ref}"
    model = workspace.model(version.model)
    if model.require_approval and not approved_by:
        raise PromotionError(
            f"{what}: model {model.name!r} requires approval (run the promotion flow, "
            "`python -m flows.promotion promote REF`, and approve it in the Prefect UI, "
            "or pass --approved-by NAME)"
        )
    check_tests_passed(workspace, version, what=what)
    if approved_by:
        reason = f"{reason} (approved by {approved_by})".strip()
    current = model.aliases.get(CHAMPION)
    result = PromotionResult("promote", model.name, current, version.number)
    moves: list[AliasMove] = []
    if current != version.number:
        moves.append(AliasMove(model.name, CHAMPION, version.number, "promote", reason))
        if current is not None:
            moves.append(AliasMove(model.name, PREVIOUS, current, "promote", reason))
        if model.aliases.get(CANDIDATE) == version.number:
            moves.append(AliasMove(model.name, CANDIDATE, None, "promote", reason))
    _execute(workspace, moves, [model.name], actor, result, mlflow=mlflow)
    if result.changed:
        _announce(workspace, result, PROMOTED_EVENT, {model.name: (current, version.number)})
    return result


# ---------------------------------------------------------------------- rollback
def _previous_when_champion(
    workspace: Workspace, name: str, number: int, alias: str = PREVIOUS
) -> tuple[bool, int | None]:
    """Replay a model's alias history: was `number` ever champion, and what did
    `alias` point at right after it last became champion?"""
    state: dict[str, int | None] = {}
    found: tuple[bool, int | None] = (False, None)
    for event in workspace.alias_history(name):
        state[event.alias] = event.to_version
        if event.alias == CHAMPION and event.to_version == number:
            found = (True, state.get(alias))
        elif event.alias == alias and state.get(CHAMPION) == number and found[0]:
            # `previous` set in the same promotion, after champion moved.
            found = (True, event.to_version)
    return found


def _restore_moves(
    workspace: Workspace,
    name: str,
    target: VersionInfo,
    current_previous: int | None,
    action: str,
    reason: str,
) -> list[AliasMove]:
    moves = [AliasMove(name, CHAMPION, target.number, action, reason)]
    was_champion, previous_then = _previous_when_champion(workspace, name, target.number)
    if was_champion:
        wanted = previous_then if previous_then != target.number else None
    else:
        wanted = None if current_previous == target.number else current_previous
    if wanted != current_previous:
        moves.append(AliasMove(name, PREVIOUS, wanted, action, reason))
    return moves


def _default_target(workspace: Workspace, name: str, current: VersionInfo) -> VersionInfo:
    """The previous champion: the `previous` alias, else the newest other champion."""
    aliases = workspace.model(name).aliases
    if aliases.get(PREVIOUS) is not None and aliases[PREVIOUS] != current.number:
        return workspace.resolve(f"{name}@{aliases[PREVIOUS]}")
    for event in reversed(workspace.alias_history(name, CHAMPION)):
        if event.to_version is not None and event.to_version != current.number:
            return workspace.resolve(f"{name}@{event.to_version}")
    raise PromotionError(
        f"cannot roll back {name}: it has no previous champion (name one with --to VERSION)"
    )


def rollback(
    workspace: Workspace,
    name: str,
    *,
    to: int | None = None,
    cascade: bool = False,
    actor: str | None = None,
    reason: str = "",
    mlflow: MlflowMirror = "atomic",
) -> PromotionResult:
    """Move `champion` of `name` back (to `to`, else the previous champion).

    With `cascade`, every descendant model whose champion derives from the
    rolled-back version goes back to its newest earlier champion that does not.
    All or nothing: any refusal raises `PromotionError` before anything changes.
    """
    model = workspace.model(name)
    if model.aliases.get(CHAMPION) is None:
        raise PromotionError(f"cannot roll back {name}: it has no champion")
    current = workspace.resolve(f"{name}@{CHAMPION}")
    if to is not None:
        try:
            target = workspace.resolve(f"{name}@{int(to)}")
        except VersionNotFoundError:
            raise PromotionError(
                f"cannot roll back {name} to version {to}: no such version"
            ) from None
    else:
        target = _default_target(workspace, name, current)
    if target.id == current.id:
        raise PromotionError(f"cannot roll back {name}: {target.ref} is already the champion")
    check_tests_passed(workspace, target, what=f"cannot roll back {name} to {target.ref}")
    result = PromotionResult("rollback", name, current.number, target.number)
    moves = _restore_moves(workspace, name, target, model.aliases.get(PREVIOUS), "rollback", reason)
    models = [name]
    if cascade:
        tainted = {v.id for v in workspace.descendants(current.ref)}
        note = f"cascade rollback of {current.ref} -> {target.ref}"
        cascade_reason = f"{note}: {reason}" if reason else note
        for other in workspace.models():
            champion = other.aliases.get(CHAMPION)
            if other.name == name or champion is None:
                continue
            champion_version = workspace.resolve(f"{other.name}@{champion}")
            if champion_version.id not in tainted:
                continue
            earlier = _earlier_clean_champion(workspace, other.name, champion, tainted)
            check_tests_passed(
                workspace, earlier, what=f"cannot cascade the rollback to {other.name}"
            )
            moves += _restore_moves(
                workspace,
                other.name,
                earlier,
                other.aliases.get(PREVIOUS),
                "rollback",
                cascade_reason,
            )
            result.cascaded[other.name] = (champion, earlier.number)
            models.append(other.name)
    _execute(workspace, moves, models, actor, result, mlflow=mlflow)
    if result.changed:
        moved = {name: (current.number, target.number), **result.cascaded}
        _announce(workspace, result, ROLLED_BACK_EVENT, moved)
    return result


def _earlier_clean_champion(
    workspace: Workspace, name: str, current: int, tainted: set[int]
) -> VersionInfo:
    """The newest earlier champion of `name` that does not derive from the rolled-back
    version (its id is not in `tainted`)."""
    seen: set[int] = {current}
    for event in reversed(workspace.alias_history(name, CHAMPION)):
        number = event.to_version
        if number is None or number in seen:
            continue
        seen.add(number)
        candidate = workspace.resolve(f"{name}@{number}")
        if candidate.id not in tainted:
            return candidate
    raise PromotionError(
        f"cannot cascade the rollback to {name}: its champion {name}@{current} derives from "
        "the rolled-back version and it has no earlier champion that does not "
        "(roll it back by hand with `lineage rollback NAME --to VERSION`, or drop --cascade)"
    )


# ---------------------------------------------------------------------- the gate
@dataclass
class GateOutcome:
    """Which aliases a gate moved to a version, and every alias it holds afterwards."""

    ref: str
    passed: bool
    aliases: list[str]  # moved to `ref` by this gate
    promoted: bool
    note: str = ""
    holds: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def gate(
    workspace: Workspace,
    ref: str,
    passed: bool,
    *,
    reason: str,
    actor: str,
    track: bool = True,
) -> GateOutcome:
    """Gate a version whose tests ran: on a pass it becomes `candidate`, then `champion`
    (by `promote`, which checks the stored results, makes the old champion `previous`
    and consumes `candidate`) when its model promotes automatically. A model that needs
    approval, or whose promotion is refused, keeps it as `candidate` (why: `note`).
    Idempotent: aliases already on `ref` are left alone, so gating twice records
    nothing new. With `track`, MLflow follows through the queue (never in the way of
    the cascade); without it, `lineage sync mlflow` mirrors the change later."""
    if not passed:
        return GateOutcome(ref=ref, passed=False, aliases=[], promoted=False)
    version = workspace.resolve(ref)
    if CHAMPION in version.aliases:
        return GateOutcome(ref, True, [], True, holds=sorted(version.aliases))
    model = workspace.model(version.model)
    mirror: MlflowMirror = "queued" if track else "off"
    moved: list[str] = []
    if CANDIDATE not in version.aliases:
        moves = [AliasMove(model.name, CANDIDATE, version.number, "set", reason)]
        _execute(workspace, moves, [model.name], actor, None, mlflow=mirror)
        moved.append(CANDIDATE)
    outcome = GateOutcome(ref=ref, passed=True, aliases=moved, promoted=False)
    if model.require_approval:
        outcome.note = "promotion needs approval (promotion flow)"
    elif model.auto_promote:
        try:
            result = promote(workspace, ref, actor=actor, reason=reason, mlflow=mirror)
        except PromotionError as exc:
            outcome.note = str(exc)
        else:
            outcome.promoted = True
            outcome.aliases += [e.alias for e in result.events if e.alias not in moved]
    outcome.holds = sorted(workspace.resolve(ref).aliases)
    return outcome


# ---------------------------------------------------------------------- execution
def _execute(
    workspace: Workspace,
    moves: list[AliasMove],
    models: list[str],
    actor: str | None,
    result: PromotionResult | None,
    *,
    mlflow: MlflowMirror = "atomic",
) -> None:
    """Apply `moves` to the lineage DB, and to MLflow as `mlflow` says (see the module
    docstring). The one alias writer of promote, rollback and the cascade's gate."""
    actor = actor or default_author()
    if mlflow != "atomic":
        with workspace.graph.transaction() as tx:
            events = _write_moves(tx, moves, actor)
        if result is not None:
            result.events.extend(events)
        if mlflow == "queued" and events:
            from lineage.tracking import queue_aliases

            queue_aliases(workspace, models)
        return
    from lineage.tracking.backend import mlflow_session
    from lineage.tracking.mirror import mirror_in, queue_aliases
    from lineage.tracking.queue import mirror_lock
    from lineage.tracking.registry import apply_aliases, ensure_registered_model, mlflow_aliases

    with mirror_lock(workspace), mlflow_session(workspace) as client:
        mirror = mirror_in(client, workspace)
        # 1. Register, before anything moves, every version that will carry an alias.
        needed = {(m.model, m.to_version) for m in moves if m.to_version is not None}
        for name in models:
            ensure_registered_model(client, name)
            needed |= {(name, n) for n in workspace.model(name).aliases.values()}
        mlflow_version = {
            (name, number): mirror.version(workspace.resolve(f"{name}@{number}"))
            for name, number in sorted(needed)
        }
        before = {name: mlflow_aliases(client, name) for name in models}
        try:
            with workspace.graph.transaction() as tx:
                # 2. The lineage DB, in this one transaction.
                events = _write_moves(tx, moves, actor)
                # 3. The MLflow registry aliases, before the DB commits.
                for name in models:
                    wanted = {
                        alias: mlflow_version[(name, number)]
                        for alias, number in tx.aliases(name).items()
                    }
                    apply_aliases(client, name, wanted)
                    if result is not None:
                        result.mlflow_aliases[name] = wanted
                    if _after_mlflow_move is not None:
                        _after_mlflow_move(name)
        except BaseException as exc:
            _compensate(client, before, exc)
            raise
    if result is not None:
        result.events.extend(events)
    # 4. The alias history (a run per change), off the critical path.
    if events:
        queue_aliases(workspace, models)


def _announce(
    workspace: Workspace,
    result: PromotionResult,
    event_name: str,
    moved: Mapping[str, tuple[int | None, int]],
) -> None:
    """Tell Prefect which champions moved; a failure is a warning, not an undo."""
    from lineage.tracking.events import emit_alias_change_if_configured

    actor = result.events[0].actor if result.events else default_author()
    reason = next((e.reason for e in result.events if e.alias == CHAMPION), "")
    for name, (old, new) in moved.items():
        try:
            emit_alias_change_if_configured(
                workspace,
                event_name,
                model=name,
                from_version=old,
                to_version=new,
                actor=actor,
                reason=reason,
                extra={"action": result.action, "origin": f"{result.model}@{result.to_version}"},
            )
        except OrchestrationError as exc:
            result.warnings.append(str(exc))


def record_decision(
    workspace: Workspace,
    ref: str,
    *,
    approved: bool,
    reviewer: str,
    reason: str = "",
    alias: str = CHAMPION,
) -> AliasEvent:
    """Record a reviewer's decision on making `ref` the `alias` of its model (an
    `approve` or `reject` event in the alias history; nothing moves)."""
    event = workspace.graph.record_alias_decision(
        ref,
        alias,
        action="approve" if approved else "reject",
        actor=reviewer or default_author(),
        reason=reason,
    )
    from lineage.tracking import queue_aliases

    queue_aliases(workspace, [event.model])
    return event


def _write_moves(tx: GraphRepo, moves: list[AliasMove], actor: str) -> list[AliasEvent]:
    events = []
    for move in moves:
        if move.to_version is None:
            event = tx.remove_alias(
                move.model, move.alias, action=move.action, actor=actor, reason=move.reason
            )
        else:
            event = tx.set_alias(
                f"{move.model}@{move.to_version}",
                move.alias,
                action=move.action,
                actor=actor,
                reason=move.reason,
            )
        if event is not None:
            events.append(event)
    return events


def _compensate(client: Any, before: dict[str, dict[str, str]], cause: BaseException) -> None:
    """Put the MLflow aliases back as they were before a failed promotion/rollback."""
    from lineage.tracking.registry import apply_aliases

    try:
        for name, aliases in before.items():
            apply_aliases(client, name, aliases)
    except Exception as exc:
        first = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
        raise TrackingError(
            f"{first}; the lineage DB is unchanged but MLflow could not be restored "
            f"({type(exc).__name__}): run `lineage sync mlflow`"
        ) from cause


__all__ = [
    "AliasMove",
    "GateOutcome",
    "MlflowMirror",
    "PromotionResult",
    "check_tests_passed",
    "gate",
    "promote",
    "record_decision",
    "rollback",
    "set_model_policy",
]
