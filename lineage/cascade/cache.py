"""The derive cache: recognise a re-derivation that was already done.

Re-running a recipe on the same parent versions with the same params and data gives
the same version, so a resumed cascade looks its work up here instead of redoing
it. The key names the model too: two models made by the same recipe from the same
parent are different lines of work and each gets its own version.

The row is written after the version is committed; a crash between the two is
covered by `find_existing`, which recognises the committed version by its
provenance (recipe, params, data, derivation parents) and backfills the row.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from lineage.db import schema as t

if TYPE_CHECKING:
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


def lookup(workspace: Workspace, key: str) -> VersionInfo | None:
    """The version cached under `key`, or None."""
    with workspace.engine.connect() as conn:
        version_id = conn.execute(
            select(t.derive_cache.c.version_id).where(t.derive_cache.c.key == key)
        ).scalar()
    if version_id is None:
        return None
    found = workspace.versions_by_id([int(version_id)])
    return found[0] if found else None


def remember(workspace: Workspace, key: str, version_id: int) -> None:
    """Record `key -> version_id`; a concurrent writer of the same key is fine."""
    try:
        with workspace.engine.begin() as conn:
            exists = conn.execute(
                select(t.derive_cache.c.key).where(t.derive_cache.c.key == key)
            ).first()
            if exists is None:
                conn.execute(
                    t.derive_cache.insert().values(
                        key=key, version_id=version_id, created_at=datetime.now(UTC)
                    )
                )
    except IntegrityError:
        pass  # another worker recorded the same derivation first


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
