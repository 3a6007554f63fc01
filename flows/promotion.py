"""Prefect flows for promotion and rollback, with a reviewer's approval where required.

`promote_flow(ref)` checks the test gate first (a version that cannot be promoted fails
at once, before anyone is asked), then — for a model with `require_approval` — waits
for a reviewer's decision, an `ApprovalDecision` form in the Prefect UI (approve or
reject, the reviewer's name, a reason). The decision is recorded in the model's alias
history (`approve` / `reject` events, so `lineage log --aliases` says who decided
what, and why) and only an approval promotes.

How it waits: a run of a deployment **suspends** (`suspend_flow_run`): its process
exits and no worker slot is held while the reviewer takes hours; resuming the run with
the form's input reschedules it, and the flow picks up from the decision. A run started
directly (`python -m flows.promotion`, no deployment to reschedule it) **pauses**
in-process instead.

`rollback_flow(name, to=None, cascade=False)` runs `lineage rollback` as a flow, so
rollbacks show up in Prefect next to the cascades that made the versions.

The promotion itself is `lineage.ops.promote.promote`: one DB transaction with the
MLflow alias moves inside it and compensation on failure, so a failed task leaves no
half-promoted state and can simply be retried. It emits `lineage.model.promoted`
(and a rollback `lineage.model.rolled_back`) for automations.

Run from a shell::

    python -m flows.promotion promote sentiment@3 --reason "beats v2"
    python -m flows.promotion rollback base --cascade --reason "bad tokenizer"
"""

from __future__ import annotations

import argparse
import re
from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.flow_runs import pause_flow_run, suspend_flow_run
from prefect.input import RunInput

from lineage.errors import PromotionError
from lineage.ops.promote import check_tests_passed, record_decision
from lineage.ops.promote import promote as promote_version
from lineage.ops.promote import rollback as rollback_model
from lineage.workspace import Workspace

#: How long a promotion waits for its reviewer before the flow run fails.
APPROVAL_TIMEOUT_S = 7 * 24 * 3600


class ApprovalDecision(RunInput):
    """The form shown in the Prefect UI when a gated promotion waits for a reviewer."""

    decision: Literal["approve", "reject"]
    reviewer: str
    reason: str = ""


@task(name="promote-version")
def promote_task(
    workspace: str, ref: str, reason: str, actor: str | None, approved_by: str | None
) -> dict[str, Any]:
    ws = Workspace.open(workspace or None)
    try:
        result = promote_version(ws, ref, actor=actor, reason=reason, approved_by=approved_by)
        return result.to_dict()
    finally:
        ws.close()


@task(name="rollback-model")
def rollback_task(
    workspace: str,
    name: str,
    to: int | None,
    cascade: bool,
    reason: str,
    actor: str | None,
) -> dict[str, Any]:
    ws = Workspace.open(workspace or None)
    try:
        result = rollback_model(ws, name, to=to, cascade=cascade, actor=actor, reason=reason)
        return result.to_dict()
    finally:
        ws.close()


def wait_for_decision(ref: str, model: str, timeout_s: int) -> ApprovalDecision:
    """The reviewer's decision on `ref`: suspended (no process left running) when this is
    a deployment's run, paused in-process otherwise."""
    from prefect.runtime import deployment

    form = ApprovalDecision.with_initial_data(
        description=f"Promote **{ref}** to champion of `{model}`? Its tests passed.",
        reason="",
    )
    # One key per version: on resume the flow runs again from the top, and the same
    # key makes `suspend_flow_run` hand back the decision instead of suspending anew.
    # (Prefect keys: lowercase letters, digits and dashes.)
    key = "approve-" + re.sub(r"[^a-z0-9]+", "-", ref.lower()).strip("-")
    if deployment.id:
        return suspend_flow_run(wait_for_input=form, timeout=timeout_s, key=key)
    return pause_flow_run(wait_for_input=form, timeout=timeout_s, key=key)


@flow(name="lineage-promote")
def promote_flow(
    ref: str,
    workspace: str = "",
    reason: str = "",
    actor: str | None = None,
    approval_timeout_s: int = APPROVAL_TIMEOUT_S,
) -> dict[str, Any]:
    """Promote `ref` to champion; wait for a reviewer first when its model requires it.

    Args:
        ref: the version to promote, e.g. sentiment@3.
        workspace: the workspace directory (default: $LINEAGE_WORKSPACE or the cwd).
        reason: why (recorded in the alias history).
        actor: who promotes (default: the user running the flow).
        approval_timeout_s: how long to wait for a reviewer before failing.
    """
    logger = get_run_logger()
    ws = Workspace.open(workspace or None)
    try:
        root = str(ws.root)
        version = ws.resolve(ref)
        # Refuse before asking anyone: approval of an untested version is moot.
        check_tests_passed(ws, version, what=f"cannot promote {version.ref}")
        needs_approval = ws.model(version.model).require_approval
    finally:
        ws.close()
    approved_by = None
    if needs_approval:
        logger.info("%s passed its tests; waiting for a reviewer in the Prefect UI", version.ref)
        decision = wait_for_decision(version.ref, version.model, approval_timeout_s)
        ws = Workspace.open(root)
        try:
            record_decision(
                ws,
                version.ref,
                approved=decision.decision == "approve",
                reviewer=decision.reviewer,
                reason=decision.reason,
            )
        finally:
            ws.close()
        if decision.decision != "approve":
            why = f": {decision.reason}" if decision.reason else ""
            raise PromotionError(
                f"promotion of {version.ref} was rejected by {decision.reviewer or 'the reviewer'}"
                + why
            )
        approved_by = decision.reviewer or "unknown"
        if decision.reason:
            reason = f"{reason} {decision.reason}".strip()
    return promote_task(root, version.ref, reason, actor, approved_by)


@flow(name="lineage-rollback")
def rollback_flow(
    name: str,
    workspace: str = "",
    to: int | None = None,
    cascade: bool = False,
    reason: str = "",
    actor: str | None = None,
) -> dict[str, Any]:
    """Roll `name` back (and, with `cascade`, its descendants).

    Args:
        name: the model whose champion goes back.
        workspace: the workspace directory (default: $LINEAGE_WORKSPACE or the cwd).
        to: the version to go back to (default: the previous champion).
        cascade: also roll back descendants derived from the rolled-back version.
        reason: why (recorded in the alias history).
        actor: who rolls back (default: the user running the flow).
    """
    return rollback_task(workspace, name, to, cascade, reason, actor)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m flows.promotion")
    parser.add_argument("--workspace", default="")
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("promote")
    p.add_argument("ref")
    p.add_argument("--reason", default="")
    r = commands.add_parser("rollback")
    r.add_argument("name")
    r.add_argument("--to", type=int, default=None)
    r.add_argument("--cascade", action="store_true")
    r.add_argument("--reason", default="")
    args = parser.parse_args(argv)
    if args.command == "promote":
        print(promote_flow(args.ref, workspace=args.workspace, reason=args.reason))
    else:
        print(
            rollback_flow(
                args.name,
                workspace=args.workspace,
                to=args.to,
                cascade=args.cascade,
                reason=args.reason,
            )
        )


if __name__ == "__main__":
    main()
