"""Walking the lineage: `lineage descendants`, `ancestors`, `path`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from lineage.cli.complete import complete_ref
from lineage.cli.output import JsonOption, print_json, say, version_line, workspace_from

if TYPE_CHECKING:
    from lineage.records import VersionInfo

AllVersionsOption = typer.Option(False, "--all-versions", help="Follow next-version edges too.")


def descendants(
    ctx: typer.Context,
    ref: str = typer.Argument(..., metavar="REF", autocompletion=complete_ref),
    all_versions: bool = AllVersionsOption,
    json_out: bool = JsonOption,
) -> None:
    """Everything derived from REF, in topological order (parents first)."""
    versions = workspace_from(ctx).descendants(ref, include_versions=all_versions)
    _print_versions(versions, json_out, f"nothing is derived from {ref}")


def ancestors(
    ctx: typer.Context,
    ref: str = typer.Argument(..., metavar="REF", autocompletion=complete_ref),
    all_versions: bool = AllVersionsOption,
    json_out: bool = JsonOption,
) -> None:
    """Everything REF was derived from, oldest first."""
    versions = workspace_from(ctx).ancestors(ref, include_versions=all_versions)
    _print_versions(versions, json_out, f"{ref} has no ancestors")


def path(
    ctx: typer.Context,
    source: str = typer.Argument(..., metavar="SOURCE"),
    target: str = typer.Argument(..., metavar="TARGET"),
    json_out: bool = JsonOption,
) -> None:
    """The chain of derivations and versions from SOURCE down to TARGET."""
    found = workspace_from(ctx).path(source, target)
    if json_out:
        print_json(None if found is None else [version.ref for version in found])
    elif found is None:
        say(f"no path from {source} to {target}")
    else:
        say(" → ".join(version.ref for version in found))


def _print_versions(versions: list[VersionInfo], json_out: bool, when_none: str) -> None:
    if json_out:
        print_json([version.to_dict() for version in versions])
        return
    for version in versions:
        say(version_line(version))
    if not versions:
        say(when_none)


def register(app: typer.Typer) -> None:
    app.command()(descendants)
    app.command()(ancestors)
    app.command()(path)
