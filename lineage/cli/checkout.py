"""`lineage checkout`: write a version's weights as a Hugging Face directory."""

from __future__ import annotations

from pathlib import Path

import typer

from lineage.cli.output import JsonOption, byte_progress, print_json, say, workspace_from


def checkout(
    ctx: typer.Context,
    ref: str = typer.Argument(..., metavar="REF"),
    directory: Path = typer.Argument(..., metavar="DIR", help="Output directory."),
    force: bool = typer.Option(
        False, "--force", help="Replace DIR if it holds an earlier lineage checkout."
    ),
    replace_any: bool = typer.Option(
        False,
        "--replace-any",
        help="Replace DIR whatever it holds (never the workspace, the current directory, "
        "its parents or your home).",
    ),
    json_out: bool = JsonOption,
) -> None:
    """Write a version's weights as a Hugging Face directory, bit-exactly (approximately,
    with a warning, for a version stored with --lossy)."""
    from lineage.ops.checkout import checkout as checkout_version
    from lineage.ops.lossy import approximate_warning_silenced

    workspace = workspace_from(ctx)
    version = workspace.resolve(ref)
    manifest = workspace.store.get_manifest(version.manifest_id)
    # the store logs its own warning for an approximate version; the CLI says it once
    with (
        approximate_warning_silenced(),
        byte_progress(f"checking out {version.ref}", enabled=not json_out) as progress,
    ):
        target = checkout_version(
            workspace,
            version.ref,
            directory,
            progress=progress,
            force=force,
            replace_any=replace_any,
        )
    if manifest.approximate:
        assert manifest.lossy is not None
        say(
            f"warning: {version.ref} was stored in lossy mode: its weights are approximate "
            f"(|error| <= {manifest.lossy['max_abs_error']:g})",
            stderr=True,
        )
    if json_out:
        print_json({"ref": version.ref, "path": str(target), "approximate": manifest.approximate})
    else:
        say(f"Checked out {version.ref} to {target}")


def register(app: typer.Typer) -> None:
    app.command()(checkout)
