"""`lineage checkout`: write a version's weights as a Hugging Face directory."""

from __future__ import annotations

from pathlib import Path

import typer

from lineage.cli.complete import complete_ref
from lineage.cli.output import JsonOption, byte_progress, print_json, say, workspace_from
from lineage.errors import UsageError


def checkout(
    ctx: typer.Context,
    ref: str = typer.Argument(..., metavar="REF", autocompletion=complete_ref),
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
    raw: bool = typer.Option(
        False, "--raw", help="The stored bytes as they are (int8 kept as int8 codes + scales)."
    ),
    with_base: bool = typer.Option(
        False,
        "--with-base",
        help="For a LoRA adapter: also write its base model to DIR/base and point the adapter "
        "at it, so stock PEFT/transformers load DIR offline.",
    ),
    json_out: bool = JsonOption,
) -> None:
    """Write a version's weights as a Hugging Face directory that stock transformers/PEFT
    load: int8 weights dequantized to float32, an adapter's config naming its base ref.
    --raw writes the bytes exactly as stored. A version stored with --lossy comes out
    approximate, with a warning."""
    if raw and with_base:
        raise UsageError(
            "--raw and --with-base cannot be combined (--with-base rewrites the adapter config)"
        )
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
            loadable=not raw,
            with_base=with_base,
        )
    if manifest.approximate:
        assert manifest.lossy is not None
        say(
            f"warning: {version.ref} was stored in lossy mode: its weights are approximate "
            f"(|error| <= {manifest.lossy['max_abs_error']:g})",
            stderr=True,
        )
    if json_out:
        print_json(
            {
                "ref": version.ref,
                "path": str(target),
                "approximate": manifest.approximate,
                "raw": raw,
                "base": str(target / "base") if with_base else None,
            }
        )
    else:
        say(f"Checked out {version.ref} to {target}" + (" (as stored)" if raw else ""))


def register(app: typer.Typer) -> None:
    app.command()(checkout)
