"""Plan a cascade from the workspace: load the versions, then plan (`plan_from_graph`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lineage.cascade.plan import CascadePlan, plan_from_graph
from lineage.errors import UsageError
from lineage.records import VersionInfo

if TYPE_CHECKING:
    from lineage.workspace import Workspace


def default_replaced(workspace: Workspace, upstream: VersionInfo) -> VersionInfo:
    """The version `upstream` replaces by default: its previous version."""
    previous = upstream.previous_version
    if previous is not None:
        return workspace.version_by_id(previous.version_id)
    if upstream.number > 1:
        return workspace.resolve(f"{upstream.model}@{upstream.number - 1}")
    raise UsageError(
        f"{upstream.ref} is the first version of {upstream.model!r}: nothing to replace "
        "(pass --replaces REF to say which version it supersedes)"
    )


def build_plan(workspace: Workspace, upstream: str, replaces: str | None = None) -> CascadePlan:
    """Plan the cascade for the new version `upstream` (e.g. `base@2`).

    `replaces` is the version it supersedes (default: the previous version).
    """
    new = workspace.resolve(upstream)
    old = workspace.resolve(replaces) if replaces else default_replaced(workspace, new)
    if old.id == new.id:
        raise UsageError(f"{new.ref} cannot replace itself")
    return plan_from_graph(
        new, old, workspace.descendants(old.ref), lambda model: workspace.resolve(model).ref
    )
