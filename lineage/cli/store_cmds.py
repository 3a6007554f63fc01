"""`lineage store stats|verify|gc` and `lineage diff`."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from lineage.cli.output import JsonOption, console, print_json, workspace_from
from lineage.errors import StoreError

store_app = typer.Typer(help="Object store housekeeping: stats, verify, gc.", no_args_is_help=True)


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


@store_app.command("stats")
def stats_command(
    ctx: typer.Context,
    refs: list[str] = typer.Argument(None, help="Only these versions (default: all)."),
    json_out: bool = JsonOption,
) -> None:
    """Logical vs stored bytes and encodings, per version and in total."""
    from lineage.api.storage import store_stats

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
            label, _mb(version.logical_bytes), _mb(version.stored_bytes), ratio, encodings
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
    refs: list[str] = typer.Argument(None, help="Only these versions (default: all)."),
    repair: bool = typer.Option(
        False, "--repair", help="Rewrite damaged objects from good bytes found in --from."
    ),
    sources: list[str] = typer.Option(
        [], "--from", help="With --repair: a folder of model files, or another store."
    ),
    json_out: bool = JsonOption,
) -> None:
    """Re-hash every object; report missing or corrupt ones by version (exit 8 if any)."""
    from lineage.api.storage import store_verify

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
            console.print(f"[red]{escape(line)}[/red]")
        if report.ok:
            console.print(f"{len(report.versions)} version(s) verified, no problems")
    if not report.ok:
        problems = report.problems()
        raise StoreError(f"{len(problems)} problem(s) found; first: {problems[0]}")


def _repair(ctx: typer.Context, refs: list[str], sources: list[str], json_out: bool) -> None:
    from lineage.api.storage import version_manifests
    from lineage.store.repair import open_repair_source, repair

    workspace = workspace_from(ctx)
    opened = [open_repair_source(text) for text in sources]
    report = repair(workspace.store, version_manifests(workspace, refs or None), opened)
    if json_out:
        print_json(report.to_dict())
    else:
        console.print(
            f"{len(report.damaged_objects)} damaged object(s), "
            f"{len(report.repaired_objects)} repaired; {len(report.damaged_manifests)} "
            f"damaged manifest(s), {len(report.repaired_manifests)} repaired"
        )
        for line in report.unrepairable:
            console.print(f"[red]unrepairable: {escape(line)}[/red]")
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
    from lineage.api.storage import store_gc

    report = store_gc(workspace_from(ctx), dry_run=dry_run)
    if json_out:
        print_json(report.to_dict())
        return
    verb = "would remove" if dry_run else "removed"
    console.print(
        f"{verb} {len(report.removed_objects)} object(s), {_mb(report.removed_bytes)}; "
        f"{report.live_objects} live, {report.kept_young} recent kept; "
        f"{verb} {len(report.removed_temp_files)} of {report.temp_files} leftover temp "
        f"file(s), {_mb(report.removed_temp_bytes)}"
    )


def diff(
    ctx: typer.Context,
    a: str = typer.Argument(...),
    b: str = typer.Argument(...),
    json_out: bool = JsonOption,
) -> None:
    """Tensors identical, changed, added and removed between two versions; config changes."""
    from lineage.api.storage import diff_versions

    report = diff_versions(workspace_from(ctx), a, b)
    if json_out:
        print_json(report.to_dict())
        return
    console.print(
        f"{len(report.identical)} identical, {len(report.changed)} changed, "
        f"{len(report.added)} added, {len(report.removed)} removed tensor(s)"
    )
    for change in report.changed[:50]:
        rel = "n/a" if change.relative_l2 is None else f"{change.relative_l2:.3g}"
        mx = "n/a" if change.max_abs is None else f"{change.max_abs:.3g}"
        console.print(f"  ~ {change.name} {change.dtype}{change.shape} rel-L2 {rel} max|Δ| {mx}")
    if len(report.changed) > 50:
        console.print(f"  … {len(report.changed) - 50} more (use --json)")
    for name in report.added:
        console.print(f"  + {name}")
    for name in report.removed:
        console.print(f"  - {name}")
    for path, changes in report.config.items():
        for change in changes:
            console.print(f"  {path}: {change}")


def register(app: typer.Typer) -> None:
    app.add_typer(store_app, name="store")
    app.command()(diff)
