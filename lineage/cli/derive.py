"""`lineage derive`: re-run a version's recipe on new parents."""

from __future__ import annotations

import typer

from lineage.cli.complete import complete_ref
from lineage.cli.output import (
    JsonOption,
    RunnerName,
    ThreadsOption,
    print_json,
    say,
    step_runner,
    training_progress,
    workspace_from,
)


def derive(
    ctx: typer.Context,
    ref: str = typer.Argument(
        ...,
        metavar="REF",
        autocompletion=complete_ref,
        help="Recipe-made version to re-derive, e.g. sentiment@2.",
    ),
    on: list[str] = typer.Option(
        [],
        "--on",
        metavar="REF",
        autocompletion=complete_ref,
        help="New parent reference (repeatable).",
    ),
    runner: RunnerName = typer.Option(
        "inline", "--runner", help="Where the recipe runs: this process, a subprocess, a container."
    ),
    threads: int = ThreadsOption,
    message: str = typer.Option("", "--message", "-m", metavar="MSG"),
    json_out: bool = JsonOption,
) -> None:
    """Re-run REF's recipe on new parents; the result is the next version of REF's model."""
    from lineage.ops.derive import rederive
    from lineage.steps.runners import check_runner_name

    check_runner_name(runner)
    with training_progress(f"re-deriving {ref}", enabled=not json_out) as progress:
        version = rederive(
            workspace_from(ctx),
            ref,
            on,
            runner=step_runner(runner, threads, progress),
            message=message,
            progress=progress,
        )
    if json_out:
        print_json(version.to_dict())
    else:
        say(f"Derived {version.ref} from {', '.join(p.ref for p in version.derivation_parents)}")


def register(app: typer.Typer) -> None:
    app.command()(derive)
