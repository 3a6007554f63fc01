"""Render a `GraphView` as text, Mermaid, DOT or JSON.

(The HTML page of `lineage graph --format html` is the `lineage ui` app in one file:
`lineage.ui.export`.)
"""

from __future__ import annotations

import json
from collections import defaultdict

from lineage.render.view import KIND_COLOURS, Edge, GraphView, Node


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


RENDERERS = {
    "text": render_text,
    "mermaid": render_mermaid,
    "dot": render_dot,
    "json": render_json,
}
