"""Prefect flows for promotion and rollback, with optional human approval.

`promote_flow(ref)` checks the test gate first (a version that cannot be promoted
fails at once, before anyone is asked), then — for a model with
`require_approval` — pauses the flow run for input in the Prefect UI (an
`Approval` form: approve yes/no, approver, note) and promotes only when approved.
`rollback_flow(name, to=None, cascade=False)` runs `lineage rollback` as a flow,
so rollbacks show up in Prefect next to the cascades that made the versions.

The promotion itself is `lineage.ops.promote.promote`: one DB transaction with the
MLflow alias moves inside it and compensation on failure, so a failed task leaves
no half-promoted state and the task can simply be retried.

Run from a shell::

    python -m flows.promotion promote sentiment@3 --reason "beats v2"
    python -m flows.promotion rollback base --cascade --reason "bad tokenizer"
"""

from __future__ import annotations

import argparse
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput

from lineage.errors import PromotionError
from lineage.ops.promote import check_tests_passed
from lineage.ops.promote import promote as promote_version
from lineage.ops.promote import rollback as rollback_model
from lineage.workspace import Workspace


class Approval(RunInput):
    """The form shown in the Prefect UI when a gated promotion waits for a human."""

    approve: bool = False
    approver: str = ""
    note: str = ""


@task(name="promote-version")
def promote_task(
    workspace_dir: str | None, ref: str, reason: str, actor: str | None, approved_by: str | None
) -> dict[str, Any]:
    workspace = Workspace.open(workspace_dir)
    try:
        result = promote_version(
            workspace, ref, actor=actor, reason=reason, approved_by=approved_by
        )
        return result.to_dict()
    finally:
        workspace.close()


@task(name="rollback-model")
def rollback_task(
    workspace_dir: str | None,
    name: str,
    to: int | None,
    cascade: bool,
    reason: str,
    actor: str | None,
) -> dict[str, Any]:
    workspace = Workspace.open(workspace_dir)
    try:
        result = rollback_model(workspace, name, to=to, cascade=cascade, actor=actor, reason=reason)
        return result.to_dict()
    finally:
        workspace.close()


@flow(name="lineage-promote")
def promote_flow(
    ref: str,
    workspace_dir: str | None = None,
    reason: str = "",
    actor: str | None = None,
    approval_timeout_s: int = 24 * 3600,
) -> dict[str, Any]:
    """Promote `ref` to champion; pause for a human first when its model requires it."""
    logger = get_run_logger()
    workspace = Workspace.open(workspace_dir)
    try:
        version = workspace.resolve(ref)
        # Refuse before asking anyone: approval of an untested version is moot.
        check_tests_passed(workspace, version, what=f"cannot promote {version.ref}")
        needs_approval = workspace.model(version.model).require_approval
    finally:
        workspace.close()
    approved_by = None
    if needs_approval:
        logger.info("%s passed its tests; waiting for approval in the Prefect UI", version.ref)
        approval = pause_flow_run(
            wait_for_input=Approval.with_initial_data(
                description=f"Promote **{version.ref}** to champion of {version.model}?"
            ),
            timeout=approval_timeout_s,
        )
        if approval is None or not approval.approve:
            who = (approval.approver if approval else "") or "the reviewer"
            raise PromotionError(f"promotion of {version.ref} was rejected by {who}")
        approved_by = approval.approver or "unknown"
        if approval.note:
            reason = f"{reason} {approval.note}".strip()
    return promote_task(workspace_dir, version.ref, reason, actor, approved_by)


@flow(name="lineage-rollback")
def rollback_flow(
    name: str,
    workspace_dir: str | None = None,
    to: int | None = None,
    cascade: bool = False,
    reason: str = "",
    actor: str | None = None,
) -> dict[str, Any]:
    """Roll `name` back (and, with `cascade`, its descendants)."""
    return rollback_task(workspace_dir, name, to, cascade, reason, actor)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m flows.promotion")
    parser.add_argument("--workspace", default=None)
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
        print(promote_flow(args.ref, workspace_dir=args.workspace, reason=args.reason))
    else:
        print(
            rollback_flow(
                args.name,
                workspace_dir=args.workspace,
                to=args.to,
                cascade=args.cascade,
                reason=args.reason,
            )
        )


if __name__ == "__main__":
    main()
