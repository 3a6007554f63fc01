"""Free-form aliases (`staging`, `canary`…): point one at a version, or remove it.

Every move is recorded in the model's alias history (who, when, why, from → to). The
serving aliases — `champion`, `candidate`, `previous` — are not free-form: they move
only through the test gate (`lineage promote`, `lineage rollback`, the cascade), so
this module refuses them.

>>> alias = set_alias(ws, "ft@1", "staging", reason="load test")
>>> (alias.alias, alias.to_version)
('staging', 1)
>>> remove_alias(ws, "ft", "staging").to_version is None
True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lineage.errors import UsageError, VersionNotFoundError
from lineage.ops.promote import GATED_ALIASES
from lineage.provenance import default_author
from lineage.records import AliasEvent

if TYPE_CHECKING:
    from lineage.workspace import Workspace


def check_free_form(alias: str) -> None:
    """Refuse the gated serving aliases, with a hint at the verbs that move them."""
    if alias in GATED_ALIASES:
        raise UsageError(
            f"{alias!r} moves only through the test gate: use `lineage promote REF` "
            "(or `lineage rollback MODEL`); `lineage alias` is for other names, e.g. staging"
        )


def set_alias(
    workspace: Workspace, ref: str, alias: str, *, actor: str | None = None, reason: str = ""
) -> AliasEvent:
    """Point `alias` of ref's model at ref's version; the change is recorded."""
    check_free_form(alias)
    event = workspace.graph.set_alias(
        ref, alias, action="set", actor=actor or default_author(), reason=reason
    )
    from lineage.tracking.mirror import queue_aliases

    queue_aliases(workspace, [event.model])  # MLflow follows, off this command's path
    return event


def remove_alias(
    workspace: Workspace, name: str, alias: str, *, actor: str | None = None, reason: str = ""
) -> AliasEvent:
    """Remove `alias` from model `name`; the change is recorded."""
    check_free_form(alias)
    event = workspace.graph.remove_alias(
        name, alias, action="remove", actor=actor or default_author(), reason=reason
    )
    if event is None:
        raise VersionNotFoundError(f"model {name!r} has no alias {alias!r}")
    from lineage.tracking.mirror import queue_aliases

    queue_aliases(workspace, [name])
    return event
