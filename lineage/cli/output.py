"""Shared CLI plumbing: the workspace option, JSON output, errors and progress bars."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

console = Console()
err_console = Console(stderr=True)

JsonOption = typer.Option(False, "--json", help="Print one JSON document on stdout.")


def workspace_from(ctx: typer.Context) -> Any:
    """Open the workspace chosen by --workspace, $LINEAGE_WORKSPACE or the cwd."""
    from lineage.workspace import Workspace

    root = (ctx.find_root().obj or {}).get("workspace")
    return Workspace.open(root)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


@contextmanager
def byte_progress(description: str, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """A progress bar fed by callback(done_bytes, total_bytes); silent when disabled
    (JSON output, or stderr not a terminal)."""
    if not enabled or not err_console.is_terminal:
        yield lambda done, total: None
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    ) as progress:
        task = progress.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """`K=V` pairs into a dict; V is parsed as JSON when it can be (numbers, lists)."""
    from lineage.errors import UsageError

    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--param expects KEY=VALUE, got {pair!r}")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params
