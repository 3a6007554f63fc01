"""Graph queries over version edges, in SQL (recursive CTEs) so they stay fast at scale.

The recursive part only walks the indexed `edges` table and returns ids; ordering
(topological, with multi-parent nodes after all their parents) happens in Python on
the already-small result set.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable, Sequence

from sqlalchemy import Connection, bindparam, text

from lineage.db.schema import DERIVATION, VERSIONING

_DESCENDANTS_SQL = """
WITH RECURSIVE reach(id) AS (
    SELECT child_id FROM edges WHERE parent_id = :root AND edge_type IN :types
    UNION
    SELECT e.child_id FROM edges e JOIN reach r ON e.parent_id = r.id
    WHERE e.edge_type IN :types
)
SELECT id FROM reach
"""

_ANCESTORS_SQL = """
WITH RECURSIVE reach(id) AS (
    SELECT parent_id FROM edges WHERE child_id = :root AND edge_type IN :types
    UNION
    SELECT e.parent_id FROM edges e JOIN reach r ON e.child_id = r.id
    WHERE e.edge_type IN :types
)
SELECT id FROM reach
"""


def _run_reach(conn: Connection, sql: str, root: int, types: Sequence[str]) -> list[int]:
    statement = text(sql).bindparams(bindparam("types", expanding=True))
    return [row[0] for row in conn.execute(statement, {"root": root, "types": list(types)})]


def descendant_ids(
    conn: Connection, version_id: int, edge_types: Sequence[str] = (DERIVATION,)
) -> list[int]:
    """Ids of every version reachable downwards from `version_id` (unordered)."""
    return _run_reach(conn, _DESCENDANTS_SQL, version_id, edge_types)


def ancestor_ids(
    conn: Connection, version_id: int, edge_types: Sequence[str] = (DERIVATION,)
) -> list[int]:
    """Ids of every version reachable upwards from `version_id` (unordered)."""
    return _run_reach(conn, _ANCESTORS_SQL, version_id, edge_types)


def edges_among(
    conn: Connection, ids: Iterable[int], edge_types: Sequence[str] = (DERIVATION,)
) -> list[tuple[int, int]]:
    """(parent, child) pairs whose both ends are in `ids`."""
    id_list = sorted(set(ids))
    if not id_list:
        return []
    pairs: list[tuple[int, int]] = []
    # Chunk the IN lists: SQLite caps bound parameters.
    statement = text(
        "SELECT parent_id, child_id FROM edges WHERE child_id IN :ids AND edge_type IN :types"
    ).bindparams(bindparam("ids", expanding=True), bindparam("types", expanding=True))
    wanted = set(id_list)
    for start in range(0, len(id_list), 5000):
        chunk = id_list[start : start + 5000]
        for parent, child in conn.execute(statement, {"ids": chunk, "types": list(edge_types)}):
            if parent in wanted:
                pairs.append((parent, child))
    return pairs


def edges_into(
    conn: Connection, ids: Iterable[int], edge_types: Sequence[str] = (DERIVATION,)
) -> list[tuple[int, int]]:
    """(parent, child) pairs whose child is in `ids` (parents anywhere)."""
    id_list = sorted(set(ids))
    statement = text(
        "SELECT parent_id, child_id FROM edges WHERE child_id IN :ids AND edge_type IN :types"
    ).bindparams(bindparam("ids", expanding=True), bindparam("types", expanding=True))
    pairs: list[tuple[int, int]] = []
    for start in range(0, len(id_list), 5000):
        chunk = id_list[start : start + 5000]
        pairs.extend(
            (int(p), int(c))
            for p, c in conn.execute(statement, {"ids": chunk, "types": list(edge_types)})
        )
    return pairs


def topological_order(nodes: Iterable[int], edges: Iterable[tuple[int, int]]) -> list[int]:
    """Kahn's algorithm; ties broken by id so the order is stable run to run.

    A node comes after *all* of its parents that are in `nodes`, which is what a
    merge (several parents) needs.
    """
    node_set = set(nodes)
    children: dict[int, list[int]] = defaultdict(list)
    indegree = dict.fromkeys(node_set, 0)
    for parent, child in edges:
        if parent in node_set and child in node_set:
            children[parent].append(child)
            indegree[child] += 1
    import heapq

    ready = [node for node, degree in indegree.items() if degree == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        node = heapq.heappop(ready)
        order.append(node)
        for child in children[node]:
            indegree[child] -= 1
            if indegree[child] == 0:
                heapq.heappush(ready, child)
    if len(order) != len(node_set):
        raise ValueError("the graph has a cycle")
    return order


def topological_levels(nodes: Iterable[int], edges: Iterable[tuple[int, int]]) -> list[list[int]]:
    """Group nodes into levels: every node's parents are in earlier levels.

    Nodes of one level are independent of each other and can run in parallel.
    """
    node_set = set(nodes)
    edge_list = [(p, c) for p, c in edges if p in node_set and c in node_set]
    parents: dict[int, list[int]] = defaultdict(list)
    for parent, child in edge_list:
        parents[child].append(parent)
    level: dict[int, int] = {}
    for node in topological_order(node_set, edge_list):
        level[node] = 1 + max((level[p] for p in parents[node]), default=-1)
    grouped: dict[int, list[int]] = defaultdict(list)
    for node, depth in level.items():
        grouped[depth].append(node)
    return [sorted(grouped[depth]) for depth in sorted(grouped)]


def descendants_in_order(
    conn: Connection, version_id: int, edge_types: Sequence[str] = (DERIVATION,)
) -> list[int]:
    """Descendants of `version_id` in topological order."""
    ids = descendant_ids(conn, version_id, edge_types)
    return topological_order(ids, edges_among(conn, ids, edge_types))


def ancestors_in_order(
    conn: Connection, version_id: int, edge_types: Sequence[str] = (DERIVATION,)
) -> list[int]:
    """Ancestors of `version_id`, oldest first (every parent before its children)."""
    ids = ancestor_ids(conn, version_id, edge_types)
    return topological_order(ids, edges_among(conn, ids, edge_types))


def would_create_cycle(conn: Connection, child_id: int, parent_id: int) -> bool:
    """True when an edge parent -> child closes a cycle (child already reaches parent)."""
    if child_id == parent_id:
        return True
    return parent_id in set(descendant_ids(conn, child_id, (DERIVATION, VERSIONING)))


def shortest_path(
    conn: Connection, source_id: int, target_id: int, edge_types: Sequence[str]
) -> list[int] | None:
    """Shortest downward path source -> ... -> target, or None if target is not below."""
    if source_id == target_id:
        return [source_id]
    above_target = set(ancestor_ids(conn, target_id, edge_types))
    if source_id not in above_target:
        return None
    nodes = above_target | {target_id}
    children: dict[int, list[int]] = defaultdict(list)
    for parent, child in edges_among(conn, nodes, edge_types):
        children[parent].append(child)
    previous: dict[int, int] = {}
    queue = deque([source_id])
    seen = {source_id}
    while queue:
        node = queue.popleft()
        for child in sorted(children[node]):
            if child in seen:
                continue
            previous[child] = node
            if child == target_id:
                path = [target_id]
                while path[-1] != source_id:
                    path.append(previous[path[-1]])
                return path[::-1]
            seen.add(child)
            queue.append(child)
    return None
