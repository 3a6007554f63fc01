"""`lineage trust`: which modules' `module:function` recipes and tests may run here."""

from __future__ import annotations

import typer

from lineage.cli.output import JsonOption, print_json, say, workspace_from


def trust(
    ctx: typer.Context,
    module: str = typer.Argument(
        None, metavar="[MODULE]", help="A module (or package) of recipes/tests you trust."
    ),
    remove: bool = typer.Option(False, "--remove", help="Stop trusting MODULE."),
    json_out: bool = JsonOption,
) -> None:
    """Trust MODULE's `module:function` recipes and tests in this workspace (no MODULE:
    list the trusted ones). References to such code are stored in the graph DB, so
    lineage runs them only from modules the workspace's own config trusts."""
    from lineage.ops.code import trust as trust_module

    workspace = workspace_from(ctx)
    trusted = (
        workspace.config.trusted_code
        if module is None
        else trust_module(workspace, module, remove=remove)
    )
    if json_out:
        print_json({"trusted": trusted})
    elif trusted:
        say("trusted: " + ", ".join(trusted) + " (and lineage's own modules)")
    else:
        say("no user modules trusted (lineage's own modules always are)")


def register(app: typer.Typer) -> None:
    app.command()(trust)
