"""`lineage init`: create a workspace."""

from __future__ import annotations

from pathlib import Path

import typer

from lineage.cli.output import JsonOption, print_json, say


def init(
    directory: Path = typer.Argument(
        Path("."), metavar="[DIR]", help="Where to create the workspace."
    ),
    db_url: str = typer.Option(
        "",
        "--db-url",
        metavar="URL",
        help="SQLAlchemy URL of the graph DB (default: SQLite in .lineage/).",
    ),
    store_url: str = typer.Option(
        "", "--store-url", metavar="URL", help="Object store: a folder or s3://bucket/prefix."
    ),
    tracking: bool = typer.Option(
        False,
        "--tracking/--no-tracking",
        help="Create the embedded MLflow store now (default: on first use, off this command).",
    ),
    json_out: bool = JsonOption,
) -> None:
    """Create a workspace (.lineage/ with config, graph DB and object store; the MLflow
    store is made on first use)."""
    from lineage.redact import redact_url
    from lineage.workspace import Workspace

    workspace = Workspace.init(directory, graph_url=db_url, store_url=store_url)
    mlflow_uri = None
    if tracking:
        from lineage.tracking import init_tracking

        mlflow_uri = init_tracking(workspace)
    if json_out:
        print_json(
            {
                "root": str(workspace.root),
                "graph_url": redact_url(workspace.graph_url),
                "mlflow": None if mlflow_uri is None else redact_url(mlflow_uri),
            }
        )
    else:
        say(f"Initialised lineage workspace in {workspace.root / '.lineage'}")


def register(app: typer.Typer) -> None:
    app.command()(init)
