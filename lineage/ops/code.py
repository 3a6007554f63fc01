"""Which user code a workspace runs: `module:function` recipes and tests.

References to user code are stored in the graph DB (a version's recipe, a test's
`ref`) and in store manifests (derivable versions), and the cascade imports them again
for every descendant. Whoever can write the DB or the bucket could plant a reference,
so a workspace runs such code only from modules its own config trusts
(`.lineage/config.toml`, `[code] trusted`), checked before anything is imported.
Built-in recipes, recipes installed as entry points and lineage's own modules are part
of the installed environment and always run.

>>> trust(ws, "toy_recipes")
['toy_recipes']
>>> check_trusted(ws, "toy_recipes:scale", "recipe")
>>> check_trusted(ws, "evil:payload", "recipe")  # doctest: +ELLIPSIS
Traceback (most recent call last):
lineage.errors.UsageError: recipe 'evil:payload': module 'evil' is not trusted here (...)
"""

from __future__ import annotations

import hashlib
import importlib.util
from typing import TYPE_CHECKING

from lineage.config import code_module, code_trusted
from lineage.errors import UsageError

if TYPE_CHECKING:
    from lineage.workspace import Workspace


def check_trusted(workspace: Workspace, reference: str, what: str) -> None:
    """Refuse (`UsageError`, one line) a `module:function` from an untrusted module."""
    if code_trusted(workspace.config, reference):
        return
    module = code_module(reference)
    raise UsageError(
        f"{what} {reference!r}: module {module!r} is not trusted here (if you trust it: "
        f"`lineage trust {module}`)"
    )


def trust(workspace: Workspace, module: str, *, remove: bool = False) -> list[str]:
    """Add `module` to (or remove it from) the workspace's trusted code; the new list."""
    if not module or not all(part.isidentifier() for part in module.split(".")):
        raise UsageError(f"invalid module name {module!r}: use package.module")
    trusted = [m for m in workspace.config.trusted_code if m != module]
    if not remove:
        trusted.append(module)
    workspace.config.trusted_code = sorted(trusted)
    workspace.save_config()
    return workspace.config.trusted_code


def code_fingerprint(reference: str) -> dict[str, str] | None:
    """What user code a version was made with: the module and the SHA-256 of its source
    file (None for built-in recipes and lineage's own code)."""
    module = code_module(reference)
    if module is None or module == "lineage" or module.startswith("lineage."):
        return None
    spec = importlib.util.find_spec(module)
    origin = spec.origin if spec is not None else None
    if not origin or not origin.endswith(".py"):
        return {"module": module, "sha256": ""}
    with open(origin, "rb") as handle:
        return {"module": module, "sha256": hashlib.sha256(handle.read()).hexdigest()}
