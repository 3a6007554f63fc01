"""`lineage show`: everything known about one version."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lineage.workspace import Workspace


def describe_version(workspace: Workspace, ref: str) -> dict[str, Any]:
    """Provenance, parents, children, aliases and tests (with where each test comes
    from and its latest result) of the version `ref` points to."""
    version = workspace.resolve(ref)
    info = version.to_dict()
    info["children"] = [child.ref for child in workspace.children(version.ref)]
    try:
        from lineage.api.testing import describe_tests
    except ImportError:  # recipes/tests layer not installed in this build
        info["tests"] = []
    else:
        info["tests"] = describe_tests(workspace, version.ref)
    return info
