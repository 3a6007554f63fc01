"""`lineage store stats|verify|gc`: object store housekeeping."""

from __future__ import annotations

import typer
from rich.table import Table

from lineage.cli.complete import complete_ref
from lineage.cli.output import JsonOption, clean, console, print_json, say, workspace_from
from lineage.errors import StoreError

store_app = typer.Typer(help="Object store housekeeping: stats, verify, gc.", no_args_is_help=True)


RefsArgument = typer.Argument(
    None, metavar="REF", autocompletion=complete_ref, help="Only these versions (default: all)."
)


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


@store_app.command("stats")
def stats_command(
    ctx: typer.Context,
    refs: list[str] = RefsArgument,
    json_out: bool = JsonOption,
) -> None:
    """Logical vs stored bytes and encodings, per version and in total."""
    from lineage.ops.storage import store_stats

    report = store_stats(workspace_from(ctx), refs or None)
    if json_out:
        print_json(report.to_dict())
        return
    table = Table(title="object store", title_justify="left")
    for column in ("version", "logical", "stored", "ratio", "encodings"):
        table.add_column(
            column, justify="right" if column in ("logical", "stored", "ratio") else "left"
        )
    for label, version in report.versions.items():
        ratio = (
            "derived"
            if version.derived
            else (f"{version.ratio:.2f}x" if version.stored_bytes else "dedup")
        )
        encodings = ", ".join(f"{k}:{v}" for k, v in sorted(version.encodings.items()))
        table.add_row(
            clean(label), _mb(version.logical_bytes), _mb(version.stored_bytes), ratio, encodings
        )
    table.add_section()
    table.add_row(
        "total", _mb(report.logical_bytes), _mb(report.stored_bytes), f"{report.ratio:.2f}x", ""
    )
    console.print(table)
    if report.temp_files:
        console.print(
            f"{report.temp_files} leftover temp file(s) of killed writers, "
            f"{_mb(report.temp_bytes)} (`lineage store gc` removes those over an hour old)"
        )


@store_app.command("verify")
def verify_command(
    ctx: typer.Context,
    refs: list[str] = RefsArgument,
    repair: bool = typer.Option(
        False, "--repair", help="Rewrite damaged objects from good bytes found in --from."
    ),
    sources: list[str] = typer.Option(
        [],
        "--from",
        metavar="DIR|STORE",
        help="With --repair: a folder of model files, or another store (repeatable).",
    ),
    json_out: bool = JsonOption,
) -> None:
    """Re-hash every object; report missing or corrupt ones by version (exit 8 if any)."""
    from lineage.ops.storage import store_verify

    if repair:
        _repair(ctx, refs, sources, json_out)
        return
    if sources:
        raise StoreError("--from only applies with --repair")
    report = store_verify(workspace_from(ctx), refs or None)
    if json_out:
        print_json(report.to_dict())
    else:
        for line in report.problems():
            say(line, style="red")
        if report.ok:
            say(f"{len(report.versions)} version(s) verified, no problems")
    if not report.ok:
        problems = report.problems()
        raise StoreError(f"{len(problems)} problem(s) found; first: {problems[0]}")


def _repair(ctx: typer.Context, refs: list[str], sources: list[str], json_out: bool) -> None:
    from lineage.ops.storage import store_repair

    report = store_repair(workspace_from(ctx), sources, refs or None)
    if json_out:
        print_json(report.to_dict())
    else:
        say(
            f"{len(report.damaged_objects)} damaged object(s), "
            f"{len(report.repaired_objects)} repaired; {len(report.damaged_manifests)} "
            f"damaged manifest(s), {len(report.repaired_manifests)} repaired"
        )
        for line in report.unrepairable:
            say(f"unrepairable: {line}", style="red")
    if not report.ok:
        raise StoreError(
            f"{len(report.unrepairable)} problem(s) left after repair; first: "
            f"{report.unrepairable[0]}"
        )


@store_app.command("gc")
def gc_command(
    ctx: typer.Context,
    dry_run: bool = typer.Option(False, "--dry-run", help="Only report what would go."),
    json_out: bool = JsonOption,
) -> None:
    """Delete objects no version references (objects written in the last hour stay)."""
    from lineage.ops.storage import store_gc

    report = store_gc(workspace_from(ctx), dry_run=dry_run)
    if json_out:
        print_json(report.to_dict())
        return
    verb = "would remove" if dry_run else "removed"
    say(
        f"{verb} {len(report.removed_objects)} object(s), {_mb(report.removed_bytes)}; "
        f"{report.live_objects} live, {report.kept_young} recent kept; "
        f"{verb} {len(report.removed_temp_files)} of {report.temp_files} leftover temp "
        f"file(s), {_mb(report.removed_temp_bytes)}"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(store_app, name="store")
