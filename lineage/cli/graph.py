"""`lineage graph`: the family tree as text, Mermaid, DOT, HTML or JSON."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal, get_args

import typer

from lineage.cli.complete import complete_model
from lineage.cli.output import JsonOption, say, workspace_from

GraphFormat = Literal["text", "mermaid", "dot", "html", "json"]
GRAPH_FORMATS: tuple[str, ...] = get_args(GraphFormat)


def graph(
    ctx: typer.Context,
    names: list[str] = typer.Argument(
        None, metavar="MODEL", autocompletion=complete_model, help="Only these families."
    ),
    fmt: GraphFormat = typer.Option("text", "--format", "-f", help="What to draw it as."),
    output: Path = typer.Option(None, "--output", "-o", metavar="FILE", help="Write to a file."),
    all_versions: bool = typer.Option(
        False, "--all-versions", "-a", help="Every version and the next-version edges."
    ),
    json_out: bool = JsonOption,
) -> None:
    """The family tree: each model's latest version, what it was derived from, aliases."""
    from lineage.render import RENDERERS
    from lineage.render.view import graph_view

    if json_out:
        fmt = "json"
    view = graph_view(workspace_from(ctx), names or None, all_versions=all_versions)
    rendered = RENDERERS[fmt](view)
    if output is not None:
        output.write_text(rendered + "\n")
        if not json_out:
            say(f"Wrote {fmt} graph to {output}")
    else:
        sys.stdout.write(rendered + "\n")


def register(app: typer.Typer) -> None:
    app.command()(graph)
