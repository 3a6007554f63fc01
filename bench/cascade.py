"""Benchmark the cascade's orchestration: overhead per node and makespan vs critical path.

A synthetic lineage graph (a base and N descendants: chains, fan-outs and merges)
is built with a trivial recipe that sleeps `--work-ms` (so the graph's shape, not
the recipe, decides the schedule), a new base version is committed, and the
cascade runs on Prefect (ephemeral mode, or $PREFECT_API_URL) with `--slots`
parallel slots, in-process steps and MLflow tracking off.

Figures:
- overhead per node: a node's wall time (derive submitted → gate finished) minus
  the time spent inside its three tasks (recipe, checkout, commit, tests, aliases).
  Target: < 0.3 s.
- makespan vs bound: the node phase's wall time against the best any scheduler
  could do with these node durations, max(critical path, total / slots).
  Target: within 1.2x.

    python bench/cascade.py --nodes 100 --slots 4 --work-ms 200
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from lineage.ops.add import add, commit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RECIPE_ID = "bench-sleep-scale"


def _register_recipe() -> None:
    """A recipe that sleeps, then writes its first parent scaled by 0.5."""
    import shutil
    import time as clock

    from pydantic import BaseModel, ConfigDict
    from safetensors.numpy import load_file, save_file

    from lineage.recipes import Recipe, register_recipe

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)
        work_ms: int = 0

    def run(
        parents: list[Path], params: Any, data: Any, out_dir: Path, progress: Any = None
    ) -> dict[str, float]:
        clock.sleep(params.work_ms / 1000)
        tensors = load_file(str(parents[0] / "model.safetensors"))
        save_file({k: v * 0.5 for k, v in tensors.items()}, str(out_dir / "model.safetensors"))
        shutil.copy(parents[0] / "config.json", out_dir / "config.json")
        return {}

    register_recipe(
        Recipe(id=RECIPE_ID, kind="other", Params=Params, run=run, min_parents=1, max_parents=None),
        id=RECIPE_ID,
    )


def _weights(directory: Path, seed: int) -> Path:
    from safetensors.numpy import save_file

    directory.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    save_file(
        {"w": rng.standard_normal((32, 32)).astype(np.float32)},
        str(directory / "model.safetensors"),
    )
    (directory / "config.json").write_text('{"model_type": "bench"}\n')
    return directory


def build_graph(root: Path, nodes: int, work_ms: int, seed: int) -> Any:
    """base@1 with `nodes` descendants: each picks 1 parent (or 2 for a merge, one in
    eight) among the base and earlier nodes, favouring recent ones (depth)."""
    from lineage.records import Provenance
    from lineage.workspace import Workspace

    rng = random.Random(seed)
    ws = Workspace.init(root / "ws")
    add(ws, "base", source=_weights(root / "w-base", 0))
    names = ["base"]
    provenance = Provenance(recipe_id=RECIPE_ID, recipe_params={"work_ms": work_ms})
    for i in range(nodes):
        pick = min(len(names) - 1, int(abs(rng.gauss(0, 6))))
        parents = [names[-1 - pick]]
        if len(names) > 3 and rng.random() < 0.125:
            other = rng.choice(names)
            if other not in parents:
                parents.append(other)
        name = f"m{i:03d}"
        add(
            ws,
            name,
            source=_weights(root / f"w-{name}", i + 1),
            parents=[f"{p}@1" for p in parents],
            kind="merge" if len(parents) > 1 else "other",
            provenance=provenance,
        )
        names.append(name)
    commit(ws, "base", source=_weights(root / "w-base2", 10_000))
    return ws


def critical_path(plan: Any, duration: dict[str, float]) -> float:
    """Longest chain of node durations through the plan's wait-for edges."""
    finish: dict[str, float] = {}
    for node in plan.to_derive:
        finish[node.model] = duration[node.model] + max(
            (finish[p] for p in node.plan_parents), default=0.0
        )
    return max(finish.values(), default=0.0)


def _print_gaps(nodes: list[dict[str, Any]]) -> None:
    """Where the overhead goes: dispatch (submitted → task began), completion
    (task ended → flow handled it), per stage, mean and p95 over nodes."""
    gaps: dict[str, list[float]] = {}
    for node in nodes:
        at = {(stage, event): t for stage, event, t in node["trace"]}
        for stage in ("derive", "test", "gate"):
            if (stage, "handled") not in at:
                continue
            gaps.setdefault(f"{stage} dispatch", []).append(
                at[(stage, "began")] - at[(stage, "submitted")]
            )
            gaps.setdefault(f"{stage} completion", []).append(
                at[(stage, "handled")] - at[(stage, "ended")]
            )
    parts = []
    for name, values in gaps.items():
        values.sort()
        p95 = values[int(0.95 * (len(values) - 1))]
        parts.append(f"{name} {statistics.mean(values):.3f}/{p95:.3f}")
    print("overhead by step, mean/p95 s: " + "; ".join(parts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--work-ms", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="lineage-bench-prefect-"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

    from flows.cascade import run_cascade
    from lineage.cascade import build_plan

    _register_recipe()
    with tempfile.TemporaryDirectory(prefix="lineage-bench-cascade-") as tmp:
        started = time.perf_counter()
        ws = build_graph(Path(tmp), args.nodes, args.work_ms, args.seed)
        plan = build_plan(ws, "base@2")
        print(
            f"graph: {args.nodes} nodes, {len(plan.levels)} levels, "
            f"widest level {max(len(level) for level in plan.levels)}, "
            f"{sum(len(n.parents) > 1 for n in plan.to_derive)} merges "
            f"(built in {time.perf_counter() - started:.1f}s)",
            flush=True,
        )
        started = time.perf_counter()
        summary = run_cascade(
            "base@2",
            workspace=str(ws.root),
            runner="inline",
            concurrency=args.slots,
            retries=0,
            track=False,
        )
        flow_wall = time.perf_counter() - started

    nodes = [n for n in summary["nodes"] if n["start_s"] is not None]
    bad = [n["model"] for n in nodes if n["status"] not in ("promoted", "candidate")]
    if bad:
        print(f"warning: {len(bad)} node(s) did not pass: {bad[:5]}")
    wall = {n["model"]: n["seconds"] for n in nodes}
    work = {n["model"]: n["work_s"] for n in nodes}
    overhead = sorted(wall[m] - work[m] for m in wall)
    makespan = max(n["end_s"] for n in nodes) - min(n["start_s"] for n in nodes)
    path = critical_path(plan, wall)
    bound = max(path, sum(wall.values()) / args.slots)
    p95 = overhead[int(0.95 * (len(overhead) - 1))]
    print(
        f"nodes run: {len(nodes)}; flow wall {flow_wall:.1f}s (incl. server start, "
        f"planning, artifacts); node phase {makespan:.1f}s"
    )
    print(
        f"work per node (inside tasks): mean {statistics.mean(work.values()):.3f}s "
        f"(recipe sleep {args.work_ms / 1000:.3f}s + checkout/commit/tests/aliases)"
    )
    print(
        f"orchestration overhead per node: mean {statistics.mean(overhead):.3f}s, "
        f"median {statistics.median(overhead):.3f}s, p95 {p95:.3f}s  (target < 0.3s)"
    )
    print(
        f"makespan {makespan:.2f}s vs bound {bound:.2f}s = max(critical path {path:.2f}s, "
        f"total {sum(wall.values()):.2f}s / {args.slots} slots): "
        f"{makespan / bound:.2f}x  (target <= 1.2x)"
    )
    _print_gaps(nodes)
    if os.environ.get("BENCH_TRACE"):
        for n in sorted(nodes, key=lambda n: n["start_s"]):
            print(n["model"], n["trace"])
    work_path = critical_path(plan, work)
    print(
        f"critical path of pure work {work_path:.2f}s; "
        f"makespan / max(work path, work / slots) = "
        f"{makespan / max(work_path, sum(work.values()) / args.slots):.2f}x"
    )


if __name__ == "__main__":
    main()
