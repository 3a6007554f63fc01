"""`lineage promote`, `rollback` and `alias`: what serves, and what served before."""

from __future__ import annotations

import typer

from lineage.cli.complete import complete_model, complete_ref
from lineage.cli.output import JsonOption, print_json, say, workspace_from


def _print_result(result: object, json_out: bool) -> None:
    from lineage.ops.promote import PromotionResult

    assert isinstance(result, PromotionResult)
    for warning in result.warnings:
        say(f"warning: {warning}", stderr=True)
    if json_out:
        print_json(result.to_dict())
        return
    if not result.changed:
        say(f"{result.model}@{result.to_version} is already the champion")
        return
    verb = "Promoted" if result.action == "promote" else "Rolled back"
    old = f"{result.model}@{result.from_version}" if result.from_version else "(none)"
    say(f"{verb} {result.model}: champion {old} -> {result.model}@{result.to_version}")
    for name, (old_number, new_number) in result.cascaded.items():
        say(f"  cascaded: {name}: champion {name}@{old_number} -> {name}@{new_number}")


def promote(
    ctx: typer.Context,
    refs: list[str] = typer.Argument(
        ...,
        metavar="REF",
        autocompletion=complete_ref,
        help="Version(s) to make champion, e.g. sentiment@3.",
    ),
    reason: str = typer.Option(
        "", "--reason", "-m", metavar="TEXT", help="Why (recorded with the change)."
    ),
    approved_by: str = typer.Option(
        None,
        "--approved-by",
        metavar="NAME",
        help="Approver's name, for models that require approval.",
    ),
    json_out: bool = JsonOption,
) -> None:
    """Make each REF the champion if all its tests passed (the old champion becomes previous).

    With several REFs each is promoted on its own; those refused are named in one error
    line at the end (exit 13) and change nothing.
    """
    from lineage.errors import PromotionError
    from lineage.ops.promote import promote as promote_version

    workspace = workspace_from(ctx)
    if len(refs) == 1:
        result = promote_version(workspace, refs[0], reason=reason, approved_by=approved_by)
        _print_result(result, json_out)
        return
    results, refused = [], []
    for ref in refs:
        try:
            result = promote_version(workspace, ref, reason=reason, approved_by=approved_by)
        except PromotionError as exc:
            refused.append((ref, str(exc)))
            continue
        results.append(result)
        if not json_out:
            _print_result(result, False)
    if json_out:
        print_json(
            {
                "promoted": [result.to_dict() for result in results],
                "refused": [{"ref": ref, "reason": why} for ref, why in refused],
            }
        )
    if refused:
        raise PromotionError(
            f"{len(refused)} of {len(refs)} refused: "
            + "; ".join(f"{ref} ({why})" for ref, why in refused)
        )


def rollback(
    ctx: typer.Context,
    name: str = typer.Argument(
        ..., metavar="MODEL", autocompletion=complete_model, help="Model whose champion goes back."
    ),
    to: int = typer.Option(
        None, "--to", metavar="VERSION", help="Version to go back to (default: previous)."
    ),
    cascade: bool = typer.Option(
        False, "--cascade", help="Also roll back descendants derived from the rolled-back version."
    ),
    reason: str = typer.Option(
        "", "--reason", "-m", metavar="TEXT", help="Why (recorded with the change)."
    ),
    json_out: bool = JsonOption,
) -> None:
    """Move champion back to the previous champion (or --to VERSION)."""
    from lineage.ops.promote import rollback as rollback_model

    workspace = workspace_from(ctx)
    result = rollback_model(workspace, name, to=to, cascade=cascade, reason=reason)
    _print_result(result, json_out)


def policy(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="MODEL"),
    auto_promote: bool = typer.Option(
        None,
        "--auto-promote/--manual",
        help="Whether a passing cascade makes a version champion (or only candidate).",
        show_default=False,
    ),
    require_approval: bool = typer.Option(
        None,
        "--require-approval/--no-require-approval",
        help="Whether a promotion needs a named approver (the promotion flow asks for one).",
        show_default=False,
    ),
    allow_untested: bool = typer.Option(
        None,
        "--allow-untested/--no-allow-untested",
        help="Whether a version that no test applies to may be promoted.",
        show_default=False,
    ),
    json_out: bool = JsonOption,
) -> None:
    """Show or change how MODEL is promoted (no options: show it)."""
    from lineage.ops.promote import set_model_policy

    model = set_model_policy(
        workspace_from(ctx),
        name,
        auto_promote=auto_promote,
        require_approval=require_approval,
        allow_untested=allow_untested,
    )
    if json_out:
        print_json(model.to_dict())
        return
    say(
        f"{model.name}: "
        + ("promoted automatically" if model.auto_promote else "promoted by hand")
        + (", needs approval" if model.require_approval else "")
        + (", untested versions may be promoted" if model.allow_untested else "")
    )


def alias(
    ctx: typer.Context,
    ref: str = typer.Argument(
        ..., metavar="REF", autocompletion=complete_ref, help="Version the alias should point to."
    ),
    name: str = typer.Argument(
        ..., metavar="ALIAS", help="Alias, e.g. staging (champion/candidate/previous: promote)."
    ),
    reason: str = typer.Option("", "--reason", metavar="TEXT", help="Why (recorded)."),
    json_out: bool = JsonOption,
) -> None:
    """Point an alias of REF's model at REF (recorded in the alias history)."""
    from lineage.ops.alias import set_alias

    event = set_alias(workspace_from(ctx), ref, name, reason=reason)
    if json_out:
        print_json(event.to_dict())
    else:
        say(f"{event.model}@{name} → {event.model}@{event.to_version}")


def register(app: typer.Typer) -> None:
    app.command()(promote)
    app.command()(rollback)
    app.command()(policy)
    app.command()(alias)
