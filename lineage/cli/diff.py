"""`lineage diff`: what changed between two versions, tensor by tensor."""

from __future__ import annotations

import typer

from lineage.cli.complete import complete_ref
from lineage.cli.output import JsonOption, print_json, say, workspace_from


def diff(
    ctx: typer.Context,
    a: str = typer.Argument(..., metavar="REF_A", autocompletion=complete_ref),
    b: str = typer.Argument(..., metavar="REF_B", autocompletion=complete_ref),
    json_out: bool = JsonOption,
) -> None:
    """Tensors identical, changed, added and removed between two versions; config changes."""
    from lineage.ops.storage import diff_versions

    report = diff_versions(workspace_from(ctx), a, b)
    if json_out:
        print_json(report.to_dict())
        return
    say(
        f"{len(report.identical)} identical, {len(report.changed)} changed, "
        f"{len(report.added)} added, {len(report.removed)} removed tensor(s)"
    )
    for change in report.changed[:50]:
        rel = "n/a" if change.relative_l2 is None else f"{change.relative_l2:.3g}"
        mx = "n/a" if change.max_abs is None else f"{change.max_abs:.3g}"
        say(f"  ~ {change.name} {change.dtype}{change.shape} rel-L2 {rel} max|Δ| {mx}")
    if len(report.changed) > 50:
        say(f"  … {len(report.changed) - 50} more (use --json)")
    for name in report.added:
        say(f"  + {name}")
    for name in report.removed:
        say(f"  - {name}")
    for path, config_changes in report.config.items():
        for config_change in config_changes:
            say(f"  {path}: {config_change}")


def register(app: typer.Typer) -> None:
    app.command()(diff)
