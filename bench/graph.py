"""Graph query latency at 1k, 10k and 100k versions (SQLite, embedded default).

Builds synthetic lineage forests straight into a migrated graph DB (families of
derived models: fine-tunes of bases, adapters and quantizations of those, merges of
siblings, and next versions), then times the queries the CLI and the cascade use.

Run: .venv/bin/python bench/graph.py [--sizes 1000 10000 100000]
Target: descendants and ancestors under 50 ms at 100k versions.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import insert

from lineage.graph import schema as t
from lineage.graph.engine import make_engine
from lineage.graph.migrate import upgrade
from lineage.graph.repo import GraphRepo

KINDS = ("finetune", "adapter", "quantize", "distill", "prune")


def build_forest(url: str, total: int, seed: int = 0) -> tuple[list[int], list[int]]:
    """Insert `total` versions; returns (root ids, leaf ids)."""
    rng = random.Random(seed)
    engine = make_engine(url)
    upgrade(engine)
    now = datetime.now(UTC)
    model_rows, version_rows, edge_rows = [], [], []
    roots, parents_of, next_id = [], {}, 1
    # Families of about 200 versions: a base with a 3-ary derivation tree under it.
    while next_id <= total:
        root = next_id
        roots.append(root)
        family = [root]
        parents_of[root] = []
        next_id += 1
        for _ in range(199):
            if next_id > total:
                break
            if len(family) > 3 and rng.random() < 0.05:
                parents = rng.sample(family[-20:], 2)  # a merge of recent siblings
            else:
                # Mostly extend recent work (deep chains), sometimes branch off old.
                recent = family[len(family) // 3 :]
                parents = [rng.choice(recent) if rng.random() < 0.7 else rng.choice(family)]
            parents_of[next_id] = parents
            family.append(next_id)
            next_id += 1
    for version_id in range(1, next_id):
        model_rows.append(
            {
                "id": version_id,
                "name": f"m{version_id}",
                "description": "",
                "tags": [],
                "auto_promote": True,
                "require_approval": False,
                "created_at": now,
            }
        )
        version_rows.append(
            {
                "id": version_id,
                "model_id": version_id,
                "number": 1,
                "manifest_id": "0" * 64,
                "kind": None if not parents_of[version_id] else rng.choice(KINDS),
                "recipe_params": {},
                "library_versions": {},
                "author": "bench",
                "message": "",
                "tags": [],
                "extra": {},
                "created_at": now,
            }
        )
        for position, parent in enumerate(parents_of[version_id]):
            edge_rows.append(
                {
                    "child_id": version_id,
                    "parent_id": parent,
                    "edge_type": t.DERIVATION,
                    "kind": "finetune",
                    "position": position,
                }
            )
    with engine.begin() as conn:
        for table, rows in (
            (t.models, model_rows),
            (t.versions, version_rows),
            (t.edges, edge_rows),
        ):
            for start in range(0, len(rows), 20_000):
                conn.execute(insert(table), rows[start : start + 20_000])
    has_child = {parent for parents in parents_of.values() for parent in parents}
    leaves = [v for v in parents_of if v not in has_child]
    engine.dispose()
    return roots, leaves


def time_queries(url: str, roots: list[int], leaves: list[int], samples: int = 30) -> dict:
    """Time the graph API's walks (`GraphRepo`), as the CLI and the cascade call them."""
    repo = GraphRepo.connect(url)
    rng = random.Random(1)
    results: dict[str, list[float]] = {"descendants": [], "ancestors": []}
    sizes: dict[str, list[int]] = {"descendants": [], "ancestors": []}
    with repo.transaction() as tx:  # one connection, as a command holds one
        tx.descendant_ids([roots[0]])  # warm the page cache
        for _ in range(samples):
            root = rng.choice(roots)
            start = time.perf_counter()
            found = tx.descendant_ids([root])
            results["descendants"].append((time.perf_counter() - start) * 1000)
            sizes["descendants"].append(len(found))
            leaf = rng.choice(leaves)
            start = time.perf_counter()
            found = tx.ancestor_ids([leaf])
            results["ancestors"].append((time.perf_counter() - start) * 1000)
            sizes["ancestors"].append(len(found))
    repo.close()
    return {
        name: (
            statistics.median(values),
            sorted(values)[int(len(values) * 0.95) - 1],
            statistics.mean(sizes[name]),
        )
        for name, values in results.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    args = parser.parse_args()
    print(f"{'versions':>9} {'query':>12} {'p50 ms':>8} {'p95 ms':>8} {'avg rows':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            url = f"sqlite:///{Path(tmp) / f'g{size}.db'}"
            build_start = time.perf_counter()
            roots, leaves = build_forest(url, size)
            build_s = time.perf_counter() - build_start
            for name, (p50, p95, rows) in time_queries(url, roots, leaves).items():
                flag = "" if p95 < 50 else "  (over the 50 ms target)"
                print(f"{size:>9} {name:>12} {p50:>8.2f} {p95:>8.2f} {rows:>9.0f}{flag}")
            print(f"{'':>9} {'(built in':>12} {build_s:.1f} s)")


if __name__ == "__main__":
    main()
