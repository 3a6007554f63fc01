"""Benchmark the cascade: overhead per node and makespan against the work's lower bound.

Synthetic (default): a lineage graph of a base and N descendants (chains, fan-outs and
merges) made with a trivial recipe that sleeps `--work-ms`, so the graph's shape, not
the recipe, decides the schedule; in-process steps, MLflow tracking off.

- overhead per node: a node's wall time (derive submitted → gate finished) minus the
  time spent inside its tasks. Target: < 0.3 s.
- makespan vs bound: the node phase's wall time against max(critical path, total /
  slots) of the node durations. Target: within 1.2x.

    python bench/cascade.py --nodes 100 --slots 4 --work-ms 200

Real (`--real`): a family of 8 models made from the bundled all-MiniLM-L6-v2 by the
built-in recipes (finetune x2, lora, distill, quantize x2, prune, merge; a few steps
each), a size test on base and an accuracy test on ft (inherited below it), then a new
base version, cascaded with the `--runner` (process or docker) on `--slots` warm
workers. Printed in the same run: each step's compute time measured inside the step
(recipe + tests), each node's wall time, the per-node overhead (wall - compute: p50,
p95; targets < 2 s process, < 3 s docker), the makespan and makespan / max(critical
path of step compute, total compute / slots) (target <= 1.3x). The first steps start
while Prefect starts (a head start): the makespan is the flow's, against the bound of
the compute left for it; a strict line counts from the first step's start instead
(`LINEAGE_HEAD_START=0`: no head starts). Without `PREFECT_API_URL`, a throwaway start
of the local server first makes Prefect's database in the bench's new `PREFECT_HOME`
(as a user's second cascade finds it), as `--table` does.

    python bench/cascade.py --real --runner process --slots 2
    python bench/cascade.py --real --runner docker --slots 2

`--table`: the issue's three-node table on the real MiniLM: `lineage add` of ft
(finetune), q (quantize of ft) and lo (lora), each as its own command, then the same
three re-derived as one `lineage cascade` after `lineage commit base` (one test declared
on ft); the cascade against the standalone critical path (ft then q; target <= 1.3x).

    python bench/cascade.py --table --runner process
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


def synthetic_main(args: argparse.Namespace) -> None:

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


# ---------------------------------------------------------------- the real family


def _family(steps: int) -> list[tuple[str, str, list[str], dict[str, Any], str | None]]:
    """(name, recipe, parents, params, data) of the real family, in creation order."""
    train = {"steps": steps, "batch_size": 8}
    return [
        ("ft", "finetune", ["base@1"], train, "sentiment"),
        ("ft2", "finetune", ["base@1"], {**train, "seed": 1}, "sentiment"),
        ("lo", "lora", ["base@1"], train, "sentiment"),
        ("ft-q", "quantize", ["ft@1"], {}, None),
        ("ft-p", "prune", ["ft@1"], {"sparsity": 0.5}, None),
        ("ft-d", "distill", ["ft@1"], train, "sentiment"),
        ("mix", "merge", ["ft@1", "ft2@1"], {}, None),
        ("mix-h", "quantize", ["mix@1"], {"dtype": "float16"}, None),
    ]


def perturbed_minilm(target: Path, seed: int = 1, scale: float = 1e-3) -> Path:
    """A new base version: MiniLM with every float tensor nudged (same files otherwise)."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from lineage.bundled import minilm_path

    source = minilm_path()
    shutil.copytree(source, target)
    tensors = load_file(str(source / "model.safetensors"))
    generator = torch.Generator().manual_seed(seed)
    nudged = {
        name: t + scale * torch.randn(t.shape, generator=generator, dtype=t.dtype)
        if t.is_floating_point()
        else t
        for name, t in tensors.items()
    }
    save_file(nudged, str(target / "model.safetensors"), metadata={"format": "pt"})
    return target


def build_real_family(root: Path, steps: int) -> Any:
    """base@1 (the bundled MiniLM), the family of `_family`, its tests, then base@2."""
    from lineage.bundled import minilm_path
    from lineage.ops.derive import add_from_recipe
    from lineage.ops.tests import declare_model_test
    from lineage.workspace import Workspace

    ws = Workspace.init(root / "ws")
    add(ws, "base", source=minilm_path())
    for name, recipe, parents, params, data in _family(steps):
        started = time.perf_counter()
        add_from_recipe(ws, name, recipe_id=recipe, parents=parents, params=params, data=data)
        print(f"  made {name}@1 ({recipe}) in {time.perf_counter() - started:.1f}s", flush=True)
    declare_model_test(ws, "base", "fits", "size", {"max_bytes": 200_000_000})
    declare_model_test(
        ws, "ft", "acc", "accuracy", {"threshold": 0.0, "dataset": "sentiment", "max_examples": 32}
    )
    commit(ws, "base", source=perturbed_minilm(root / "base2"), message="new upstream")
    return ws


def _task_seconds(node: dict[str, Any]) -> dict[str, float]:
    """Seconds inside each of a node's tasks (derive, test, gate), from its trace."""
    at = {(stage, event): t for stage, event, t in node["trace"]}
    return {
        stage: at[(stage, "ended")] - at[(stage, "began")]
        for stage in ("derive", "test", "gate")
        if (stage, "ended") in at
    }


def _began(node: dict[str, Any]) -> float:
    """When the node began, on the flow's clock: submitted, or its step's head start."""
    at = {(stage, event): t for stage, event, t in node["trace"]}
    derive_began = at.get(("derive", "began"), node["start_s"])
    return float(min(node["start_s"], derive_began - node.get("head_start_s", 0.0)))


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[round(q * (len(ordered) - 1))]


def report_real(plan: Any, summary: dict[str, Any], slots: int, flow_wall: float) -> None:
    """Print the figures of one real cascade (see the module docstring).

    The flow's window runs from its first submission to its last node's end. A step
    that got a head start (it began while Prefect started) did part of its compute
    before the window: the bound is that of the compute left for the window, and the
    node's overhead is counted from the window's start. The strict figures count every
    node from its step's start instead, so time an early result waited for Prefect's
    server counts against the cascade."""
    nodes = [n for n in summary["nodes"] if n["start_s"] is not None]
    bad = [n["model"] for n in nodes if n["status"] not in ("promoted", "candidate")]
    if bad:
        print(f"warning: {len(bad)} node(s) did not pass: {bad}")
    window = min(n["start_s"] for n in nodes)
    end = {n["model"]: n["end_s"] for n in nodes}
    began = {n["model"]: _began(n) for n in nodes}  # on the flow's clock; < 0: early
    compute = {n["model"]: n["compute_s"] for n in nodes}
    queued = {n["model"]: n["queued_s"] for n in nodes}
    before = {m: min(compute[m], max(0.0, window - began[m])) for m in compute}
    left = {m: compute[m] - before[m] for m in compute}
    # Overhead: what a node costs beyond its compute, not counting the time its step
    # waited for a worker busy with another node's compute (that is the schedule).
    overhead = {m: end[m] - max(began[m], window) - left[m] - queued[m] for m in end}
    print(
        f"{'node':8} {'recipe':9} {'compute':>8} {'early':>6} {'wall':>7} {'queued':>7} "
        f"{'overhead':>9} = {'host side':>9} + {'gate task':>9} + {'other':>6}  threads"
    )
    for node in plan.to_derive:
        n = next(x for x in nodes if x["model"] == node.model)
        m = node.model
        task = _task_seconds(n)
        # The derive task waited for what its step had not computed when it began.
        host = task.get("derive", 0.0) - max(0.0, compute[m] - n.get("head_start_s", 0.0))
        host -= queued[m]
        gate = task.get("gate", 0.0) + task.get("test", 0.0)
        print(
            f"{m:8} {node.recipe_id:9} {compute[m]:7.2f}s {before[m]:5.2f}s "
            f"{end[m] - max(began[m], window):6.2f}s {queued[m]:6.2f}s "
            f"{overhead[m]:8.2f}s   {host:8.2f}s   {gate:8.2f}s  "
            f"{overhead[m] - host - gate:5.2f}s  {n['threads']}"
        )
    values = list(overhead.values())
    makespan = max(end.values()) - window
    bound = max(critical_path(plan, left), sum(left.values()) / slots)
    strict = max(end.values()) - min(began.values())
    strict_bound = max(critical_path(plan, compute), sum(compute.values()) / slots)
    strict_overhead = [end[m] - began[m] - compute[m] - queued[m] for m in end]
    prefect = summary.get("prefect") or {}
    workers = summary.get("workers") or {}
    print(
        f"per-node overhead (wall - compute - queued): p50 {_pct(values, 0.5):.2f}s, "
        f"p95 {_pct(values, 0.95):.2f}s, max {max(values):.2f}s"
    )
    print(
        f"makespan {makespan:.1f}s vs bound {bound:.1f}s = max(critical path of compute "
        f"{critical_path(plan, left):.1f}s, total compute {sum(left.values()):.1f}s / {slots} "
        f"slots): {makespan / bound:.2f}x (compute done before the flow, head starts: "
        f"{sum(before.values()):.1f}s)"
    )
    print(
        f"strict, from the first step's start: makespan {strict:.1f}s vs bound "
        f"{strict_bound:.1f}s = {strict / strict_bound:.2f}x; per-node overhead p50 "
        f"{_pct(strict_overhead, 0.5):.2f}s, p95 {_pct(strict_overhead, 0.95):.2f}s"
    )
    print(
        f"flow wall {flow_wall:.1f}s (incl. Prefect {'start ' if prefect.get('ephemeral') else ''}"
        f"{prefect.get('startup_s', 0):.1f}s, planning, artifacts); workers: "
        f"{workers.get('runner')} warm={workers.get('warm')} slots={workers.get('slots')} "
        f"threads={workers.get('threads')} replaced={workers.get('replaced')} "
        f"pinned={','.join(workers.get('pinned') or []) or 'no'} "
        f"started early={workers.get('early')}"
    )
    _print_gaps(nodes)


def real_main(args: argparse.Namespace) -> None:
    from flows.cascade import run_cascade
    from lineage.cascade import build_plan

    with tempfile.TemporaryDirectory(prefix="lineage-bench-real-") as tmp:
        Path(tmp).chmod(0o755)  # the docker runner's containers read inputs below it
        started = time.perf_counter()
        print(f"building the family on MiniLM ({args.steps} steps per training recipe)...")
        ws = build_real_family(Path(tmp), args.steps)
        plan = build_plan(ws, "base@2")
        _create_prefect_database(ws.root, dict(os.environ))
        print(
            f"family: {len(plan.to_derive)} nodes in {len(plan.levels)} levels "
            f"(built in {time.perf_counter() - started:.0f}s); cascade with the "
            f"{args.runner} runner, {args.slots} slots, warm={not args.cold}, "
            f"tracking={'on' if args.track else 'off'}",
            flush=True,
        )
        started = time.perf_counter()
        summary = run_cascade(
            "base@2",
            workspace=str(ws.root),
            runner=args.runner,
            concurrency=args.slots,
            retries=0,
            track=args.track,
            warm=not args.cold,
        )
        report_real(plan, summary, args.slots, time.perf_counter() - started)


# ---------------------------------------------------------------- the table


def _timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    import subprocess

    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return seconds


_START_STOP_SERVER = (
    "from prefect.server.api.server import SubprocessASGIServer as S; "
    "s = S(); s.start(timeout=180); s.stop()"
)


def _create_prefect_database(cwd: Path, env: dict[str, str]) -> None:
    """Without a configured API: start and stop the local server once. A user's Prefect
    home holds its database after the first cascade; this bench's home is new, so the
    measured start would otherwise also create the database."""
    if not os.environ.get("PREFECT_API_URL"):
        first = _timed([sys.executable, "-c", _START_STOP_SERVER], cwd, env)
        print(f"first start of the local Prefect server in a new PREFECT_HOME: {first:.1f}s")


def table_main(args: argparse.Namespace) -> None:
    """The issue's table: three `lineage add --recipe` commands, then the same three as
    one `lineage cascade` after `lineage commit base`."""
    import json
    import subprocess

    from lineage.bundled import minilm_path

    lineage_cli = [sys.executable, "-m", "lineage.cli.main"]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    steps = str(args.steps)
    # With tracking on, the background MLflow writer may still be writing into the
    # workspace while it is removed: what it leaves is not the bench's concern.
    with tempfile.TemporaryDirectory(
        prefix="lineage-bench-table-", ignore_cleanup_errors=True
    ) as tmp:
        root = Path(tmp)
        root.chmod(0o755)
        ws = root / "ws"
        ws.mkdir()
        _timed([*lineage_cli, "init", "."], ws, env)
        _timed([*lineage_cli, "add", "base", "--from", str(minilm_path())], ws, env)
        standalone = {
            "ft": _timed(
                [
                    *lineage_cli,
                    "add",
                    "ft",
                    "-p",
                    "base@1",
                    "--recipe",
                    "finetune",
                    "--data",
                    "sentiment",
                    "--param",
                    f"steps={steps}",
                ],
                ws,
                env,
            ),
            "q": _timed([*lineage_cli, "add", "q", "-p", "ft@1", "--recipe", "quantize"], ws, env),
            "lo": _timed(
                [
                    *lineage_cli,
                    "add",
                    "lo",
                    "-p",
                    "base@1",
                    "--recipe",
                    "lora",
                    "--data",
                    "sentiment",
                    "--param",
                    f"steps={steps}",
                ],
                ws,
                env,
            ),
        }
        for name, seconds in standalone.items():
            print(f"standalone `lineage add {name} --recipe ...`: {seconds:.1f}s")
        _timed(
            [
                *lineage_cli,
                "tests",
                "declare",
                "ft",
                "acc",
                "--kind",
                "accuracy",
                "--param",
                "threshold=0.0",
                "--param",
                "dataset=sentiment",
                "--param",
                "max_examples=32",
            ],
            ws,
            env,
        )
        _timed(
            [
                *lineage_cli,
                "commit",
                "base",
                "--from",
                str(perturbed_minilm(root / "base2")),
                "--no-emit",
            ],
            ws,
            env,
        )
        _create_prefect_database(ws, env)
        command = [
            *lineage_cli,
            "cascade",
            "base@2",
            "--runner",
            args.runner,
            "--json",
            "--concurrency",
            str(args.slots),
            "--retries",
            "0",
        ]
        if not args.track:
            command.append("--no-track")
        if args.cold:
            command.append("--no-warm")
        started = time.perf_counter()
        done = subprocess.run(command, cwd=ws, env=env, capture_output=True, text=True)
        cascade_s = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"cascade failed ({done.returncode}):\n{done.stderr[-3000:]}")
        summary = json.loads(done.stdout)
    path = standalone["ft"] + standalone["q"]
    for node in summary["nodes"]:
        print(
            f"  cascade node {node['model']}: wall {node['seconds']:.1f}s, "
            f"compute {node['compute_s']:.1f}s, {node['status']}"
        )
    prefect = summary.get("prefect") or {}
    print(
        f"cascade of the three (`lineage cascade base@2 --runner {args.runner}`, tracking "
        f"{'on' if args.track else 'off'}): {cascade_s:.1f}s, of which Prefect start-up "
        f"{prefect.get('startup_s', 0):.1f}s; standalone critical path (ft + q) {path:.1f}s: "
        f"{cascade_s / path:.2f}x (target <= 1.3x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=100, help="synthetic: descendants")
    parser.add_argument("--slots", type=int, default=None, help="nodes at once")
    parser.add_argument("--work-ms", type=int, default=200, help="synthetic: recipe sleep")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--real", action="store_true", help="the real MiniLM family")
    parser.add_argument("--table", action="store_true", help="the issue's three-node table")
    parser.add_argument("--runner", default="process", choices=("process", "docker", "inline"))
    parser.add_argument("--steps", type=int, default=5, help="real: steps per training recipe")
    parser.add_argument("--track", action="store_true", help="real: MLflow tracking on")
    parser.add_argument("--cold", action="store_true", help="real: a fresh worker per step")
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="lineage-bench-prefect-"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    if not args.track:
        # Tracking off: no MLflow writer drains the registry mirror's queue in the
        # background, during the run or while the scratch workspace is removed.
        os.environ.setdefault("LINEAGE_MLFLOW_WRITER", "deferred")
    if args.table:
        args.slots = args.slots or 2
        table_main(args)
    elif args.real:
        args.slots = args.slots or 2
        real_main(args)
    else:
        args.slots = args.slots or 4
        synthetic_main(args)


if __name__ == "__main__":
    main()
