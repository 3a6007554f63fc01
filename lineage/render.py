"""Render the lineage graph as text, Mermaid, DOT, JSON or a self-contained HTML page.

The HTML page is the `lineage ui` app in one file (see `lineage.ui.export`): it needs
no server or network at view time.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from lineage.records import VersionInfo

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
    def from_versions(cls, versions: list[VersionInfo]) -> GraphView:
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


def _label(node: Node) -> str:
    aliases = f" [{', '.join(node.aliases)}]" if node.aliases else ""
    return f"{node.ref}{aliases}"


def render_text(view: GraphView) -> str:
    """An indented tree: roots first, each child under each of its parents."""
    by_id = {node.id: node for node in view.nodes}
    children: dict[int, list[tuple[int, Edge]]] = defaultdict(list)
    has_parent: set[int] = set()
    for edge in view.edges:
        children[edge.parent].append((edge.child, edge))
        has_parent.add(edge.child)
    for kids in children.values():
        kids.sort(key=lambda item: (by_id[item[0]].model, by_id[item[0]].number))
    roots = sorted(
        (node for node in view.nodes if node.id not in has_parent),
        key=lambda node: (node.model, node.number),
    )
    lines: list[str] = []
    expanded: set[int] = set()

    def walk(node_id: int, prefix: str, is_last: bool, edge: Edge | None, top: bool) -> None:
        node = by_id[node_id]
        connector = "" if top else ("└── " if is_last else "├── ")
        how = ""
        if edge is not None:
            how = " (next version)" if edge.edge_type == "versioning" else f" ({edge.kind})"
        repeat = node_id in expanded
        lines.append(
            f"{prefix}{connector}{_label(node)}{how}{' …' if repeat and children[node_id] else ''}"
        )
        if repeat:
            return
        expanded.add(node_id)
        child_prefix = prefix if top else prefix + ("    " if is_last else "│   ")
        kids = children[node_id]
        for index, (child_id, child_edge) in enumerate(kids):
            walk(child_id, child_prefix, index == len(kids) - 1, child_edge, False)

    for root in roots:
        walk(root.id, "", True, None, True)
    return "\n".join(lines) if lines else "(empty graph)"


def _mermaid_id(node: Node) -> str:
    return f"v{node.id}"


def render_mermaid(view: GraphView) -> str:
    lines = ["graph TD"]
    for node in view.nodes:
        text = _label(node).replace('"', "'")
        lines.append(f'    {_mermaid_id(node)}["{text}"]')
    by_id = {node.id: node for node in view.nodes}
    for edge in view.edges:
        arrow = "-.->" if edge.edge_type == "versioning" else "-->"
        label = "next" if edge.edge_type == "versioning" else (edge.kind or "")
        parent, child = by_id[edge.parent], by_id[edge.child]
        lines.append(f"    {_mermaid_id(parent)} {arrow}|{label}| {_mermaid_id(child)}")
    return "\n".join(lines)


def render_dot(view: GraphView) -> str:
    lines = ["digraph lineage {", "  rankdir=TB;", '  node [shape=box, style="rounded,filled"];']
    for node in view.nodes:
        colour = KIND_COLOURS.get(node.kind or "base", "#868E96")
        label = _label(node).replace('"', '\\"')
        lines.append(f'  v{node.id} [label="{label}", fillcolor="{colour}33", color="{colour}"];')
    for edge in view.edges:
        if edge.edge_type == "versioning":
            lines.append(f'  v{edge.parent} -> v{edge.child} [style=dashed, label="next"];')
        else:
            lines.append(f'  v{edge.parent} -> v{edge.child} [label="{edge.kind or ""}"];')
    lines.append("}")
    return "\n".join(lines)


def render_json(view: GraphView) -> str:
    return json.dumps(view.to_dict(), indent=2)


def render_html(view: GraphView, title: str = "lineage graph") -> str:
    """A self-contained page of the graph: the `lineage ui` app with the data inlined
    (`lineage.ui.export`; `lineage graph --format html` adds panels, tests, cascades)."""
    from lineage.ui.export import html_from_graph

    return html_from_graph(view.to_dict(), title)


RENDERERS = {
    "text": render_text,
    "mermaid": render_mermaid,
    "dot": render_dot,
    "json": render_json,
    "html": render_html,
}
