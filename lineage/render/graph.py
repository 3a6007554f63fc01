"""Render a `GraphView` as text, Mermaid, DOT, JSON or a self-contained HTML page.

The HTML page draws an SVG laid out here, in Python (layered by topological level),
so it needs no script or network at view time.
"""

from __future__ import annotations

import html
import json
from collections import defaultdict

from lineage.graph.walk import topological_levels
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


def _layout(view: GraphView) -> dict[int, tuple[float, float]]:
    levels = topological_levels(
        [node.id for node in view.nodes], [(edge.parent, edge.child) for edge in view.edges]
    )
    by_id = {node.id: node for node in view.nodes}
    positions: dict[int, tuple[float, float]] = {}
    parents: dict[int, list[int]] = defaultdict(list)
    for edge in view.edges:
        parents[edge.child].append(edge.parent)
    for depth, level in enumerate(levels):
        # Barycenter heuristic: a node goes under the mean position of its parents,
        # which keeps a family together and edges short.
        def key(node_id: int) -> tuple[float, str, int]:
            xs = [positions[p][0] for p in parents[node_id] if p in positions]
            centre = sum(xs) / len(xs) if xs else float("inf")
            return (centre, by_id[node_id].model, by_id[node_id].number)

        for index, node_id in enumerate(sorted(level, key=key)):
            positions[node_id] = (40 + index * 230, 40 + depth * 110)
    return positions


def render_html(view: GraphView, title: str = "lineage graph") -> str:
    """A self-contained page: inline SVG and CSS, no external resources."""
    positions = _layout(view)
    width = max((x for x, _ in positions.values()), default=0) + 260
    height = max((y for _, y in positions.values()), default=0) + 120
    by_id = {node.id: node for node in view.nodes}
    parts: list[str] = []
    for edge in view.edges:
        x1, y1 = positions[edge.parent]
        x2, y2 = positions[edge.child]
        dashed = ' stroke-dasharray="6 4"' if edge.edge_type == "versioning" else ""
        label = "next version" if edge.edge_type == "versioning" else (edge.kind or "")
        parts.append(
            f'<path d="M{x1 + 95},{y1 + 52} C{x1 + 95},{y1 + 80} {x2 + 95},{y2 - 28} '
            f'{x2 + 95},{y2}" class="edge"{dashed} marker-end="url(#arrow)">'
            f"<title>{html.escape(by_id[edge.parent].ref)} → "
            f"{html.escape(by_id[edge.child].ref)}: {html.escape(label)}</title></path>"
        )
    for node in view.nodes:
        x, y = positions[node.id]
        colour = KIND_COLOURS.get(node.kind or "base", "#868E96")
        badges = "".join(
            f'<tspan class="alias" dx="6">{html.escape(alias)}</tspan>' for alias in node.aliases
        )
        tooltip = html.escape(
            f"{node.ref}\nkind: {node.kind or 'base'}\nrecipe: {node.recipe or '-'}\n"
            f"created: {node.created_at}\n{node.message}"
        )
        parts.append(
            f'<g class="node"><title>{tooltip}</title>'
            # An opaque backing, so edges that pass behind a box do not show through.
            f'<rect x="{x}" y="{y}" width="190" height="52" rx="9" fill="#ffffff"/>'
            f'<rect x="{x}" y="{y}" width="190" height="52" rx="9" fill="{colour}22" '
            f'stroke="{colour}" stroke-width="2"/>'
            f'<text x="{x + 10}" y="{y + 21}" class="ref">{html.escape(node.ref)}</text>'
            f'<text x="{x + 10}" y="{y + 41}" class="meta">'
            f"{html.escape(node.kind or 'base')}{badges}</text></g>"
        )
    legend = "".join(
        f'<span class="key"><i style="background:{colour}"></i>{kind}</span>'
        for kind, colour in KIND_COLOURS.items()
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 24px; color: #212529; }}
h1 {{ font-size: 20px; margin: 0 0 8px; }}
.legend {{ margin: 8px 0 16px; font-size: 13px; }}
.key {{ margin-right: 14px; }}
.key i {{ display: inline-block; width: 11px; height: 11px; border-radius: 3px;
          margin-right: 4px; vertical-align: -1px; }}
.edge {{ fill: none; stroke: #adb5bd; stroke-width: 1.6; }}
.ref {{ font-size: 14px; font-weight: 600; }}
.meta {{ font-size: 12px; fill: #495057; }}
.alias {{ fill: #c92a2a; font-weight: 600; }}
.node:hover rect {{ stroke-width: 3; }}
</style></head>
<body>
<h1>{html.escape(title)}</h1>
<div>{len(view.nodes)} versions, {len(view.edges)} edges. Solid arrows: derivation (labelled by
kind); dashed: next version. Hover a box for provenance.</div>
<div class="legend">{legend}</div>
<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"
     viewBox="0 0 {width} {height}">
<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7"
markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#adb5bd"/></marker></defs>
{"".join(parts)}
</svg>
<script type="application/json" id="lineage-graph">{html.escape(render_json(view))}</script>
</body></html>
"""


RENDERERS = {
    "text": render_text,
    "mermaid": render_mermaid,
    "dot": render_dot,
    "json": render_json,
    "html": render_html,
}
