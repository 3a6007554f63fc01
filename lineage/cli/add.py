"""`lineage add`, `lineage commit` and `lineage link`: record versions and edges."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from lineage.cli.complete import complete_model, complete_ref
from lineage.cli.output import (
    KIND_HELP,
    JsonOption,
    RunnerName,
    ThreadsOption,
    byte_progress,
    parse_params,
    print_json,
    say,
    step_runner,
    training_progress,
    version_line,
    workspace_from,
)
from lineage.errors import UsageError
from lineage.records import Kind, VersionInfo

if TYPE_CHECKING:
    from lineage.ops.lossy import LossyRequest

MessageOption = typer.Option("", "--message", "-m", metavar="MSG", help="What this version is.")
TagOption = typer.Option([], "--tag", "-t", metavar="TAG", help="Tag the version (repeatable).")
LossyOption = typer.Option(
    False,
    "--lossy",
    help="Store approximately (quantized deltas) if the version's tests still pass; else lossless.",
)
MaxErrorOption = typer.Option(
    None,
    "--max-error",
    metavar="FLOAT",
    help="With --lossy: largest |error| per weight (default 1e-4).",
)
LossyToleranceOption = typer.Option(
    None,
    "--lossy-tolerance",
    metavar="FLOAT",
    help="With --lossy: largest change of any test metric vs the exact weights (default 0.01).",
)


def lossy_from_flags(
    lossy: bool, max_error: float | None, tolerance: float | None
) -> LossyRequest | None:
    """The validated lossy request of the --lossy flags (checked before any write)."""
    if not lossy:
        if max_error is not None or tolerance is not None:
            raise UsageError("--max-error and --lossy-tolerance need --lossy")
        return None
    from lineage.ops.lossy import DEFAULT_MAX_ERROR, DEFAULT_TOLERANCE, lossy_request

    return lossy_request(
        DEFAULT_MAX_ERROR if max_error is None else max_error,
        DEFAULT_TOLERANCE if tolerance is None else tolerance,
    )


def _report_lossy(version: VersionInfo) -> None:
    """One line on stderr on how a --lossy request ended."""
    decision = (version.extra or {}).get("lossy")
    if not decision:
        return
    if decision["accepted"]:
        say(
            f"Stored {version.ref} lossily (|error| <= {decision['max_abs_error']:g}, "
            f"{decision['approximate_tensors']} tensors approximate): {decision['reason']}",
            stderr=True,
        )
    else:
        say(f"warning: {version.ref}: lossy not kept: {decision['reason']}", stderr=True)


def add(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="NAME", help="Name of the new model."),
    source: Path = typer.Option(
        None, "--from", metavar="PATH", help="HF directory or .safetensors file."
    ),
    parent: list[str] = typer.Option(
        [],
        "--parent",
        "-p",
        metavar="REF",
        autocompletion=complete_ref,
        help="Parent reference (repeatable); `auto` finds the likeliest.",
    ),
    kind: Kind = typer.Option(None, "--kind", "-k", metavar="KIND", help=KIND_HELP),
    recipe: str = typer.Option(
        None, "--recipe", "-r", metavar="ID", help="Make the weights with a recipe."
    ),
    param: list[str] = typer.Option(
        [], "--param", metavar="KEY=VALUE", help="Recipe parameter (repeatable)."
    ),
    data: str = typer.Option(
        None, "--data", metavar="DATA", help="Data set: a built-in name or a CSV/JSONL."
    ),
    runner: RunnerName = typer.Option(
        "inline", "--runner", help="Where a recipe runs: this process, a subprocess, a container."
    ),
    threads: int = ThreadsOption,
    message: str = MessageOption,
    tag: list[str] = TagOption,
    lossy: bool = LossyOption,
    max_error: float = MaxErrorOption,
    lossy_tolerance: float = LossyToleranceOption,
    json_out: bool = JsonOption,
) -> None:
    """Register a new model from existing weights, or make it with a recipe."""
    lossy_request = lossy_from_flags(lossy, max_error, lossy_tolerance)
    workspace = workspace_from(ctx)
    suggested: list[tuple[str, float]] = []
    if recipe is not None:
        if source is not None:
            raise UsageError("give either --from (existing weights) or --recipe, not both")
        if lossy_request is not None:
            raise UsageError("--lossy applies to --from weights (a recipe's output is re-made)")
        from lineage.ops.derive import add_from_recipe
        from lineage.steps.runners import check_runner_name

        check_runner_name(runner)
        with training_progress(f"{recipe} → {name}", enabled=not json_out) as progress:
            version = add_from_recipe(
                workspace,
                name,
                recipe_id=recipe,
                parents=parent,
                params=parse_params(param),
                data=data,
                message=message,
                runner=step_runner(runner, threads, progress),
                progress=progress,
                tags=tag,
            )
    else:
        from lineage.ops.add import add as add_version
        from lineage.ops.storage import auto_parent, suggest_parents

        if source is None:
            raise UsageError("give --from PATH (existing weights) or --recipe ID")
        if threads is not None:
            raise UsageError("--threads applies to --recipe (weights from --from are not computed)")
        if parent == ["auto"]:
            best, score = auto_parent(workspace, source)
            if not json_out:
                say(f"Likely parent: {best} (similarity {score:.2f})")
            parent = [best]
        with byte_progress(f"adding {name}", enabled=not json_out) as bytes_done:
            version = add_version(
                workspace,
                name,
                source=source,
                parents=parent,
                kind=kind,
                message=message,
                tags=tag,
                progress=bytes_done,
                lossy=lossy_request,
            )
        if not version.parents:
            # MGit's autopilot: name the likely parent, but let the user decide.
            suggested = suggest_parents(workspace, source, exclude_model=name)
    _report_lossy(version)
    if json_out:
        data_out = version.to_dict()
        if recipe is None:
            data_out["suggested_parents"] = [
                {"ref": ref, "similarity": round(score, 3)} for ref, score in suggested
            ]
        print_json(data_out)
        return
    say(f"Added {version_line(version)}")
    if suggested:
        best, score = suggested[0]
        say(
            f"Hint: {name} looks derived from {best} (similarity {score:.2f}); record it "
            f"with `lineage link {version.ref} {best} --kind finetune`, or next time "
            "pass --parent auto"
        )


def commit(
    ctx: typer.Context,
    name: str = typer.Argument(
        ..., metavar="MODEL", autocompletion=complete_model, help="Existing model."
    ),
    source: Path = typer.Option(
        ..., "--from", metavar="PATH", help="HF directory or .safetensors file."
    ),
    parent: list[str] = typer.Option(
        None,
        "--parent",
        "-p",
        metavar="REF",
        autocompletion=complete_ref,
        help="Parents of the new version (default: as before).",
    ),
    message: str = MessageOption,
    tag: list[str] = TagOption,
    emit: bool = typer.Option(
        True, "--emit/--no-emit", help="Announce the version to Prefect when one is configured."
    ),
    lossy: bool = LossyOption,
    max_error: float = MaxErrorOption,
    lossy_tolerance: float = LossyToleranceOption,
    json_out: bool = JsonOption,
) -> None:
    """Record the next version of a model."""
    from lineage.ops.add import commit as commit_version

    lossy_request = lossy_from_flags(lossy, max_error, lossy_tolerance)
    workspace = workspace_from(ctx)
    with byte_progress(f"committing {name}", enabled=not json_out) as bytes_done:
        version = commit_version(
            workspace,
            name,
            source=source,
            parents=parent or None,
            message=message,
            tags=tag,
            progress=bytes_done,
            lossy=lossy_request,
        )
    _report_lossy(version)
    emitted = False
    if emit:
        from lineage.tracking.events import emit_if_configured

        emitted = emit_if_configured(workspace, version)
    if json_out:
        print_json({**version.to_dict(), "event_emitted": emitted})
    else:
        say(f"Committed {version_line(version)}")
        if emitted:
            say("Emitted lineage.model.committed")


def link(
    ctx: typer.Context,
    child: str = typer.Argument(
        ..., metavar="CHILD", autocompletion=complete_ref, help="The derived version."
    ),
    parent: str = typer.Argument(
        ..., metavar="PARENT", autocompletion=complete_ref, help="What it was derived from."
    ),
    kind: Kind = typer.Option("other", "--kind", "-k", metavar="KIND", help=KIND_HELP),
    json_out: bool = JsonOption,
) -> None:
    """Record that existing version CHILD was derived from PARENT (refuses cycles)."""
    from lineage.ops.add import link as link_versions

    version = link_versions(workspace_from(ctx), child, parent, kind=kind)
    if json_out:
        print_json(version.to_dict())
    else:
        say(f"Linked {version_line(version)}")


def register(app: typer.Typer) -> None:
    app.command()(add)
    app.command()(commit)
    app.command()(link)
