"""Pure topology over (parent, child) edge pairs: orderings, levels, shortest paths.

No database here: callers pass the nodes and edges they loaded, so the cascade planner
and the graph repository share one implementation of each rule.

>>> topological_order([3, 1, 2], [(1, 2), (2, 3)])
[1, 2, 3]
>>> topological_levels([1, 2, 3, 4], [(1, 2), (1, 3), (2, 4), (3, 4)])
[[1], [2, 3], [4]]
>>> shortest_path(1, 4, [(1, 2), (2, 4), (1, 3), (3, 5)])
[1, 2, 4]
"""

from __future__ import annotations

import heapq
from collections import defaultdict, deque
from collections.abc import Iterable
from typing import TypeVar

#: Version ids or model names: hashable and ordered (ties break by that order).
Node = TypeVar("Node", int, str)


class CycleFound(ValueError):
    """The edges given close a cycle (the derivation graph must be acyclic)."""


def topological_order(nodes: Iterable[Node], edges: Iterable[tuple[Node, Node]]) -> list[Node]:
    """Kahn's algorithm; ties broken by the nodes' order, so the result is stable.

    A node comes after *all* of its parents that are in `nodes`, which is what a merge
    (several parents) needs. Edges with an end outside `nodes` are ignored.
    """
    node_set = set(nodes)
    children: dict[Node, list[Node]] = defaultdict(list)
    indegree = dict.fromkeys(node_set, 0)
    for parent, child in edges:
        if parent in node_set and child in node_set:
            children[parent].append(child)
            indegree[child] += 1
    ready = [node for node, degree in indegree.items() if degree == 0]
    heapq.heapify(ready)
    order: list[Node] = []
    while ready:
        node = heapq.heappop(ready)
        order.append(node)
        for child in children[node]:
            indegree[child] -= 1
            if indegree[child] == 0:
                heapq.heappush(ready, child)
    if len(order) != len(node_set):
        raise CycleFound("the graph has a cycle")
    return order


def topological_levels(
    nodes: Iterable[Node], edges: Iterable[tuple[Node, Node]]
) -> list[list[Node]]:
    """Group nodes into levels: every node's parents are in earlier levels.

    Nodes of one level are independent of each other and can run in parallel.
    """
    node_set = set(nodes)
    edge_list = [(p, c) for p, c in edges if p in node_set and c in node_set]
    parents: dict[Node, list[Node]] = defaultdict(list)
    for parent, child in edge_list:
        parents[child].append(parent)
    level: dict[Node, int] = {}
    for node in topological_order(node_set, edge_list):
        level[node] = 1 + max((level[p] for p in parents[node]), default=-1)
    grouped: dict[int, list[Node]] = defaultdict(list)
    for node, depth in level.items():
        grouped[depth].append(node)
    return [sorted(grouped[depth]) for depth in sorted(grouped)]


def shortest_path(
    source: Node, target: Node, edges: Iterable[tuple[Node, Node]]
) -> list[Node] | None:
    """The shortest downward path source -> ... -> target (breadth first, children in
    sorted order so ties resolve the same way every time), or None."""
    if source == target:
        return [source]
    children: dict[Node, list[Node]] = defaultdict(list)
    for parent, child in edges:
        children[parent].append(child)
    previous: dict[Node, Node] = {}
    queue = deque([source])
    seen = {source}
    while queue:
        node = queue.popleft()
        for child in sorted(children[node]):
            if child in seen:
                continue
            previous[child] = node
            if child == target:
                path = [target]
                while path[-1] != source:
                    path.append(previous[path[-1]])
                return path[::-1]
            seen.add(child)
            queue.append(child)
    return None
