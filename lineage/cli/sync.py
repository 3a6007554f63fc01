"""`lineage sync mlflow`: bring MLflow back in step with the lineage DB."""

from __future__ import annotations

import typer

from lineage.cli.output import JsonOption, print_json, say, workspace_from

sync_app = typer.Typer(
    help="Bring an external system back in step with the lineage DB.", no_args_is_help=True
)


@sync_app.command("mlflow")
def sync_mlflow(
    ctx: typer.Context,
    model: list[str] = typer.Option(
        [], "--model", metavar="MODEL", help="Only these models (repeatable)."
    ),
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
        say(f"MLflow at {report.tracking_uri} is in step ({len(report.models)} models)")
        return
    say(
        f"Synced MLflow at {report.tracking_uri}: {len(report.registered)} versions registered, "
        f"{len(report.derive_runs)} derive runs, {len(report.test_runs)} test runs, "
        f"aliases of {len(report.aliases_changed)} models"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(sync_app, name="sync")
