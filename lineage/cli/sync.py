"""`lineage sync mlflow`: bring MLflow back in step with the lineage DB."""

from __future__ import annotations

import typer

from lineage.cli.complete import complete_model
from lineage.cli.output import JsonOption, print_json, say, workspace_from

sync_app = typer.Typer(
    help="Bring an external system back in step with the lineage DB.", no_args_is_help=True
)


@sync_app.command("mlflow")
def sync_mlflow(
    ctx: typer.Context,
    model: list[str] = typer.Option(
        [],
        "--model",
        metavar="MODEL",
        autocompletion=complete_model,
        help="Only these models (repeatable).",
    ),
    retry_failed: bool = typer.Option(
        False, "--retry-failed", help="Queue the records MLflow refused earlier again first."
    ),
    json_out: bool = JsonOption,
) -> None:
    """Write the queued MLflow records, then repair MLflow from the lineage DB: versions,
    runs, aliases, alias history (idempotent)."""
    from lineage.tracking.queue import retry_failed as requeue_failed
    from lineage.tracking.sync import sync_workspace

    workspace = workspace_from(ctx)
    if retry_failed:
        requeue_failed(workspace)
    report = sync_workspace(workspace, model or None)
    if json_out:
        print_json(report.to_dict())
        return
    if not report.changed:
        say(f"MLflow at {report.tracking_uri} is in step ({len(report.models)} models)")
    else:
        say(
            f"Synced MLflow at {report.tracking_uri}: {report.queued_written} queued records "
            f"written; repaired {len(report.registered)} versions, "
            f"{len(report.derive_runs)} derive runs, {len(report.test_runs)} test runs, "
            f"aliases of {len(report.aliases_changed)} models"
        )
    for name, versions in report.foreign_versions.items():
        say(
            f"warning: MLflow model {name} has versions lineage did not register "
            f"({', '.join(versions)}): its numbers are shifted",
            stderr=True,
        )
    if report.failed_jobs:
        say(
            f"warning: {len(report.failed_jobs)} record(s) MLflow refused are kept aside; "
            "`lineage sync mlflow --retry-failed` tries them again",
            stderr=True,
        )


def register(app: typer.Typer) -> None:
    app.add_typer(sync_app, name="sync")
