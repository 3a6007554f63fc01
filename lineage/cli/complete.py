"""Shell completion of model names and version references.

`lineage --install-completion` installs it for the current shell (bash, zsh, fish,
PowerShell); then `lineage show sent<TAB>` completes `sentiment`, and
`lineage show sentiment@<TAB>` offers its versions, `latest` and its aliases. The
candidates come from the workspace the command would use (`--workspace`,
`$LINEAGE_WORKSPACE`, or the current directory's); outside one, nothing is offered.
"""

from __future__ import annotations

import typer


def _model_names(ctx: typer.Context | None) -> list[str]:
    from lineage.workspace import Workspace

    root = None
    if ctx is not None:
        root = (ctx.find_root().params or {}).get("workspace")
    workspace = Workspace.open(root)
    try:
        return [model.name for model in workspace.models()]
    finally:
        workspace.close()


def complete_model(ctx: typer.Context, incomplete: str) -> list[str]:
    """Model names starting with `incomplete`."""
    try:
        names = _model_names(ctx)
    except Exception:  # no workspace here, an unreadable DB: offer nothing
        return []
    return [name for name in names if name.startswith(incomplete)]


def complete_ref(ctx: typer.Context, incomplete: str) -> list[str]:
    """Model names, or, after `NAME@`, that model's versions, `latest` and aliases."""
    name, at, _ = incomplete.partition("@")
    if not at:
        return complete_model(ctx, incomplete)
    from lineage.workspace import Workspace

    try:
        root = (ctx.find_root().params or {}).get("workspace") if ctx is not None else None
        workspace = Workspace.open(root)
        try:
            model = workspace.model(name)
        finally:
            workspace.close()
    except Exception:
        return []
    targets = [str(n) for n in range(model.latest or 0, 0, -1)] + ["latest", *sorted(model.aliases)]
    refs = [f"{name}@{target}" for target in targets]
    return [ref for ref in refs if ref.startswith(incomplete)]
