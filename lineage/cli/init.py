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
        help=(
            "URL of the graph DB: sqlite:///PATH or postgresql://USER@HOST/DB "
            "(default: SQLite in .lineage/)."
        ),
    ),
    store_url: str = typer.Option(
        "", "--store-url", metavar="URL", help="Object store: a folder or s3://bucket/prefix."
    ),
    tracking: bool = typer.Option(
        False,
        "--tracking/--no-tracking",
        help="Create the MLflow store (or check the tracking server answers) now; by "
        "default it is made on first use, off this command.",
    ),
    json_out: bool = JsonOption,
) -> None:
    """Create a workspace (.lineage/ with config, graph DB and object store; the MLflow
    store is made on first use)."""
    from lineage.redact import redact_url
    from lineage.workspace import Workspace

    mlflow_uri: list[str] = []

    def prepare(workspace: Workspace) -> None:
        # A tracking server that does not answer fails the init, and leaves nothing.
        from lineage.tracking import init_tracking

        mlflow_uri.append(init_tracking(workspace))

    workspace = Workspace.init(
        directory, graph_url=db_url, store_url=store_url, prepare=prepare if tracking else None
    )
    if json_out:
        print_json(
            {
                "root": str(workspace.root),
                "graph_url": redact_url(workspace.graph_url),
                "mlflow": redact_url(mlflow_uri[0]) if mlflow_uri else None,
            }
        )
    else:
        say(f"Initialised lineage workspace in {workspace.root / '.lineage'}")


def register(app: typer.Typer) -> None:
    app.command()(init)
