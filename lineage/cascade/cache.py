"""The derive cache: recognise a re-derivation that was already done.

Re-running a recipe on the same parent versions with the same params and data gives
the same version, so a resumed cascade looks its work up here instead of redoing
it. The key names the model too: two models made by the same recipe from the same
parent are different lines of work and each gets its own version.

The row is written after the version is committed; a crash between the two is
covered by `find_existing`, which recognises the committed version by its
provenance (recipe, params, data, derivation parents) and backfills the row.

>>> len(cache_key("ft", "finetune", {"steps": 5}, ["base@2"], None))
64
>>> cache_key("m", "merge", {}, ["a@1", "b@1"], None) != cache_key(
...     "m", "merge", {}, ["b@1", "a@1"], None)
True
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lineage.cascade.plan import CascadePlan, PlanNode
    from lineage.records import VersionInfo
    from lineage.workspace import Workspace

KEY_VERSION = "1"  # bump when the key's ingredients change


def cache_key(
    model: str,
    recipe_id: str | None,
    params: dict[str, Any],
    parent_refs: Sequence[str],
    data_fingerprint: str | None,
) -> str:
    """Stable hex key of one derivation: model + recipe + params + parents + data.

    Parent order matters (a merge's weights follow it); params are canonical JSON so
    dict order does not.
    """
    payload = {
        "v": KEY_VERSION,
        "model": model,
        "recipe": recipe_id,
        "params": params,
        "parents": list(parent_refs),
        "data": data_fingerprint,
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def node_key(node: PlanNode, parent_refs: Sequence[str]) -> str:
    return cache_key(
        node.model, node.recipe_id, node.recipe_params, parent_refs, node.data_fingerprint
    )


def find_derived(
    workspace: Workspace, node: PlanNode, parent_refs: Sequence[str], *, backfill: bool = True
) -> VersionInfo | None:
    """The version an earlier run made for `node` on `parent_refs`, if any: by its cache
    key, else by its provenance (a run killed between commit and cache write; with
    `backfill` the row is written then). The one lookup the flow and `--dry-run` share."""
    key = node_key(node, parent_refs)
    version_id = workspace.graph.cached_version_id(key)
    if version_id is not None:
        found = workspace.versions_by_id([version_id])
        if found:
            return found[0]
    existing = find_existing(
        workspace,
        node.model,
        node.recipe_id,
        node.recipe_params,
        parent_refs,
        node.data_fingerprint,
    )
    if existing is not None and backfill:
        workspace.graph.remember_derivation(key, existing.id)
    return existing


def find_existing(
    workspace: Workspace,
    model: str,
    recipe_id: str | None,
    params: dict[str, Any],
    parent_refs: Sequence[str],
    data_fingerprint: str | None,
) -> VersionInfo | None:
    """A committed version of `model` with exactly this provenance, newest first."""
    wanted_parents = list(parent_refs)
    wanted_params = json.dumps(params, sort_keys=True, default=str)
    for version in workspace.log(model):
        if version.recipe_id != recipe_id or version.data_fingerprint != data_fingerprint:
            continue
        if [link.ref for link in version.derivation_parents] != wanted_parents:
            continue
        if json.dumps(version.recipe_params, sort_keys=True, default=str) != wanted_params:
            continue
        return version
    return None


def find_done(workspace: Workspace, plan: CascadePlan) -> dict[str, str]:
    """Fill `plan.done`: nodes a previous (crashed or finished) run of this cascade
    already derived. A node counts only when its planned parents are done too (its
    inputs are known)."""
    made: dict[str, str] = {}
    for node in plan.to_derive:
        if any(parent not in made for parent in node.plan_parents):
            continue
        refs = [
            made[p.model] if p.source == "plan" else (p.new_ref or p.old_ref) for p in node.parents
        ]
        found = find_derived(workspace, node, refs, backfill=False)
        if found is not None:
            made[node.model] = found.ref
    plan.done = made
    return made
