"""`lineage graph`: the family tree as text, Mermaid, DOT, HTML or JSON."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal, get_args

import typer

from lineage.cli.complete import complete_model
from lineage.cli.output import JsonOption, say, workspace_from
from lineage.errors import UsageError

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
    if fmt not in GRAPH_FORMATS:
        raise UsageError(f"unknown format {fmt!r}; use one of {', '.join(GRAPH_FORMATS)}")
    workspace = workspace_from(ctx)
    if fmt == "html":  # the lineage ui app as one file: panels, tests, cascades included
        from lineage.ui.export import export_html

        rendered = export_html(workspace, names or None, all_versions=all_versions)
    else:
        rendered = RENDERERS[fmt](graph_view(workspace, names or None, all_versions=all_versions))
    if output is not None:
        output.write_text(rendered + "\n")
        if not json_out:
            say(f"Wrote {fmt} graph to {output}")
    else:
        sys.stdout.write(rendered + "\n")


def register(app: typer.Typer) -> None:
    app.command()(graph)
