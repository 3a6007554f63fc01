"""`lineage show`: everything known about one version."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lineage.ops.tests import describe_tests

if TYPE_CHECKING:
    from lineage.workspace import Workspace


def describe_version(workspace: Workspace, ref: str) -> dict[str, Any]:
    """Provenance, parents, children, aliases, tests (with where each test comes
    from and its latest result) of the version `ref` points to, and whether its
    weights are approximate (stored in lossy mode)."""
    version = workspace.resolve(ref)
    info = version.to_dict()
    info["children"] = [child.ref for child in workspace.children(version.ref)]
    # stored in lossy mode: checkout gives approximate weights (the bound is in `lossy`)
    manifest = workspace.store.get_manifest(version.manifest_id)
    info["approximate"] = manifest.approximate
    info["lossy"] = manifest.lossy if manifest.approximate else None
    info["tests"] = describe_tests(workspace, version.ref)
    return info
