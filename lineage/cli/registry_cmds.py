"""Commands over promotion and the MLflow mirror: promote, rollback, sync mlflow."""

from __future__ import annotations

import typer

from lineage.cli.output import JsonOption, console, print_json, workspace_from

sync_app = typer.Typer(
    help="Bring an external system back in step with the lineage DB.", no_args_is_help=True
)


def _print_result(result: object, json_out: bool) -> None:
    from lineage.api.promote import PromotionResult

    assert isinstance(result, PromotionResult)
    if json_out:
        print_json(result.to_dict())
        return
    if not result.changed:
        console.print(f"{result.model}@{result.to_version} is already the champion")
        return
    verb = "Promoted" if result.action == "promote" else "Rolled back"
    old = f"{result.model}@{result.from_version}" if result.from_version else "(none)"
    console.print(f"{verb} {result.model}: champion {old} -> {result.model}@{result.to_version}")
    for name, (old_number, new_number) in result.cascaded.items():
        console.print(f"  cascaded: {name}: champion {name}@{old_number} -> {name}@{new_number}")


def promote(
    ctx: typer.Context,
    refs: list[str] = typer.Argument(..., help="Version(s) to make champion, e.g. sentiment@3."),
    reason: str = typer.Option("", "--reason", "-m", help="Why (recorded with the change)."),
    approved_by: str = typer.Option(
        None, "--approved-by", help="Approver's name, for models that require approval."
    ),
    json_out: bool = JsonOption,
) -> None:
    """Make each REF the champion if all its tests passed (the old champion becomes previous).

    With several REFs each is promoted on its own; those refused are named in one error
    line at the end (exit 13) and change nothing.
    """
    from lineage.api.promote import promote as promote_version
    from lineage.errors import PromotionError

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
    name: str = typer.Argument(..., help="Model whose champion goes back."),
    to: int = typer.Option(None, "--to", help="Version to go back to (default: previous)."),
    cascade: bool = typer.Option(
        False, "--cascade", help="Also roll back descendants derived from the rolled-back version."
    ),
    reason: str = typer.Option("", "--reason", "-m", help="Why (recorded with the change)."),
    json_out: bool = JsonOption,
) -> None:
    """Move champion back to the previous champion (or --to VERSION)."""
    from lineage.api.promote import rollback as rollback_model

    workspace = workspace_from(ctx)
    result = rollback_model(workspace, name, to=to, cascade=cascade, reason=reason)
    _print_result(result, json_out)


@sync_app.command("mlflow")
def sync_mlflow(
    ctx: typer.Context,
    model: list[str] = typer.Option([], "--model", help="Only these models (repeatable)."),
    json_out: bool = JsonOption,
) -> None:
    """Repair MLflow from the lineage DB: versions, runs, aliases (idempotent)."""
    from lineage.tracking.sync import sync_workspace

    workspace = workspace_from(ctx)
    report = sync_workspace(workspace, model or None)
    if json_out:
        print_json(report.to_dict())
        return
    if not report.changed:
        console.print(f"MLflow at {report.tracking_uri} is in step ({len(report.models)} models)")
        return
    console.print(
        f"Synced MLflow at {report.tracking_uri}: {len(report.registered)} versions registered, "
        f"{len(report.derive_runs)} derive runs, {len(report.test_runs)} test runs, "
        f"aliases of {len(report.aliases_changed)} models"
    )


def register(app: typer.Typer) -> None:
    app.command()(promote)
    app.command()(rollback)
    app.add_typer(sync_app, name="sync")
