"""`GraphView`: the versions and edges a graph picture shows, independent of format."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lineage.records import VERSIONING, VersionInfo

if TYPE_CHECKING:
    from lineage.workspace import Workspace

#: One colour per derivation kind (and `base` for roots), shared by every picture.
KIND_COLOURS = {
    "base": "#4C6EF5",
    "finetune": "#2F9E44",
    "adapter": "#F08C00",
    "distill": "#9C36B5",
    "quantize": "#1098AD",
    "prune": "#E03131",
    "merge": "#5C940D",
    "other": "#868E96",
}


@dataclass
class Node:
    id: int
    ref: str
    model: str
    number: int
    kind: str | None
    aliases: list[str]
    recipe: str | None
    message: str
    created_at: str


@dataclass
class Edge:
    parent: int
    child: int
    edge_type: str
    kind: str | None


@dataclass
class GraphView:
    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)

    @classmethod
    def from_versions(cls, versions: list[VersionInfo], *, version_edges: bool = True) -> GraphView:
        """The view of `versions` and the edges among them (without the dashed
        next-version edges unless `version_edges`)."""
        ids = {v.id for v in versions}
        view = cls()
        for version in versions:
            view.nodes.append(
                Node(
                    id=version.id,
                    ref=version.ref,
                    model=version.model,
                    number=version.number,
                    kind=version.kind,
                    aliases=version.aliases,
                    recipe=version.recipe_id,
                    message=version.message,
                    created_at=version.created_at.isoformat(),
                )
            )
            for link in version.parents:
                if link.edge_type == VERSIONING and not version_edges:
                    continue
                if link.version_id in ids:
                    view.edges.append(Edge(link.version_id, version.id, link.edge_type, link.kind))
        return view

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GraphView:
        return cls(
            nodes=[Node(**node) for node in data["nodes"]],
            edges=[Edge(**edge) for edge in data["edges"]],
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodes": [node.__dict__ for node in self.nodes],
            "edges": [edge.__dict__ for edge in self.edges],
        }


def graph_view(
    workspace: Workspace, names: Sequence[str] | None = None, *, all_versions: bool = False
) -> GraphView:
    """The picture `lineage graph` draws: by default each model's latest version and
    the versions it was derived from; `all_versions` shows every version and the
    next-version edges; `names` limits it to those models' families."""
    ids = workspace.graph.family_ids(names, all_versions=all_versions)
    return GraphView.from_versions(workspace.versions_by_id(ids), version_edges=all_versions)
