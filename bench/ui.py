"""Benchmark of `lineage ui`: layout and first-paint time of the graph in headless Chromium.

For 50, 500 and 2,000 synthetic versions it prints, per view ("current family" and
"all versions"), the median over a few page loads of:

- layout: the dagre layout of every connected part of the graph, packed (ms);
- render: layout plus building the SVG (ms);
- interactive: from the start of the script's data load to the first painted frame
  with every node drawn and its handlers attached (ms).

The page is the HTML export (data embedded), so the figures are the browser's alone;
the server's side is measured too, on real SQLite workspaces of the same sizes made
with tiny weights: how long `lineage ui` takes from the command to a page that answers,
and the time of `/api/graph` (what the first paint waits for) and of `/api/status`
(test statuses, fetched after the first paint).

Synthetic graph: families of models, each model derived from a recent model of its
family (depth at most 4, about one in twelve a merge of two), 1-4 versions each, each
version derived from its parent's then-newest version, with aliases and a mix of test
statuses.

Run: `python bench/ui.py [--sizes 50,500,2000] [--runs 3] [--no-server]`
(needs Chromium at /usr/bin/chromium or $LINEAGE_CHROMIUM, and the `playwright` package).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lineage.ops.add import add, commit  # noqa: E402
from lineage.testing import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from lineage.ui.export import render_page  # noqa: E402

KINDS = ["finetune", "adapter", "distill", "quantize", "prune"]


def synthetic_family(versions: int, seed: int = 7) -> list[dict[str, Any]]:
    """A list of models: name, parent models, kind, number of versions (see docstring)."""
    rng = random.Random(seed)
    models: list[dict[str, Any]] = []
    count = 0
    while count < versions:
        n = min(1 + rng.randrange(4), versions - count)
        family = [m for m in models[-25:] if m["depth"] < 4]
        model: dict[str, Any]
        if not models or rng.random() < 0.06 or not family:
            model = {"name": f"base-{len(models)}", "parents": [], "kind": None, "depth": 0}
        else:
            parent = rng.choice(family)
            parents = [parent]
            kind = rng.choice(KINDS)
            others = [m for m in family if m is not parent]
            if others and rng.random() < 0.08:
                parents.append(rng.choice(others))
                kind = "merge"
            model = {
                "name": f"{kind}-{len(models)}",
                "parents": parents,
                "kind": kind,
                "depth": 1 + max(p["depth"] for p in parents),
            }
        model["versions"] = n
        models.append(model)
        count += n
    return models


def synthetic_snapshot(versions: int) -> dict[str, Any]:
    """The JSON the UI reads (`lineage.ui.snapshot.build_snapshot`), for a synthetic graph."""
    rng = random.Random(versions)
    models = synthetic_family(versions)
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []
    newest: dict[str, dict[str, Any]] = {}
    start = datetime(2026, 1, 1, tzinfo=UTC)
    statuses: dict[str, Any] = {}
    current: list[int] = []
    for model in models:
        previous = None
        for number in range(1, model["versions"] + 1):
            node = {
                "id": len(nodes) + 1,
                "ref": f"{model['name']}@{number}",
                "model": model["name"],
                "number": number,
                "kind": model["kind"],
                "recipe": model["kind"],
                "tags": ["bench"],
                "aliases": [],
                "author": "bench",
                "message": f"version {number} of {model['name']}",
                "created_at": (start + timedelta(minutes=len(nodes))).isoformat(),
                "latest": number == model["versions"],
            }
            nodes.append(node)
            for parent in model["parents"]:
                edges.append(
                    {
                        "parent": newest[parent["name"]]["id"],
                        "child": node["id"],
                        "edge_type": "derivation",
                        "kind": model["kind"],
                    }
                )
            if previous is not None:
                edges.append(
                    {
                        "parent": previous["id"],
                        "child": node["id"],
                        "edge_type": "versioning",
                        "kind": None,
                    }
                )
            total = rng.choice([0, 1, 2, 3])
            failed = 1 if total and rng.random() < 0.12 else 0
            status = "failed" if failed else ("passed" if total else "untested")
            statuses[node["ref"]] = {
                "status": status,
                "tests": {
                    "total": total,
                    "passed": total - failed,
                    "failed": failed,
                    "untested": 0,
                },
            }
            previous = node
            newest[model["name"]] = node
        newest[model["name"]]["aliases"] = ["champion"]
    ids = {node["id"] for node in nodes if node["latest"]}
    parents_of: dict[int, list[int]] = {}
    for edge in edges:
        if edge["edge_type"] == "derivation":
            parents_of.setdefault(edge["child"], []).append(edge["parent"])
    current = sorted(ids | {p for child in ids for p in parents_of.get(child, [])})
    return {
        "workspace": {"name": f"bench-{versions}", "backend": "synthetic"},
        "generated_at": start.isoformat(),
        "models": [
            {"name": m["name"], "tags": [], "latest": m["versions"], "aliases": {}} for m in models
        ],
        "versions": nodes,
        "edges": edges,
        "current": current,
        "cascades": [],
        "links": {"mlflow": None, "prefect": None},
        "statuses": statuses,
        "storage": None,
    }


def measure_page(browser: Any, page_file: Path, runs: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {"layout_ms": [], "render_ms": [], "interactive_ms": []}
    for _ in range(runs):
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        page.goto(page_file.as_uri())
        page.wait_for_selector("body[data-ready=graph]", timeout=600_000)
        timings = page.evaluate("window.lineageUi.timings")
        for key in samples:
            samples[key].append(float(timings[key]))
        context.close()
    return {key: statistics.median(values) for key, values in samples.items()}


def browser_figures(sizes: list[int], runs: int) -> None:
    from playwright.sync_api import sync_playwright

    print("browser (headless Chromium, 1400x900, median of", runs, "loads)")
    print(
        f"{'versions':>9} {'view':<15} {'shown':>6} {'layout ms':>10} {'render ms':>10} "
        f"{'interactive ms':>15}"
    )
    with tempfile.TemporaryDirectory(prefix="lineage-bench-ui-") as tmp, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for size in sizes:
            snap = synthetic_snapshot(size)
            for mode in ("current", "all"):
                page_file = Path(tmp) / f"bench-{size}-{mode}.html"
                data = {"snapshot": snap, "details": {}, "initial": {"mode": mode}}
                page_file.write_text(render_page(data, f"bench {size}"))
                figures = measure_page(browser, page_file, runs)
                shown = len(snap["current"]) if mode == "current" else len(snap["versions"])
                label = "current family" if mode == "current" else "all versions"
                print(
                    f"{size:>9} {label:<15} {shown:>6} {figures['layout_ms']:>10.0f} "
                    f"{figures['render_ms']:>10.0f} {figures['interactive_ms']:>15.0f}"
                )
        browser.close()


def make_workspace(root: Path, size: int) -> Any:
    """A real workspace with the synthetic graph (tiny weights, one file reused)."""
    from lineage.testing import write_tiny_weights
    from lineage.workspace import Workspace

    ws = Workspace.init(root)
    weights = write_tiny_weights(root / "weights", 0)
    for model in synthetic_family(size):
        parents = [f"{p['name']}@latest" for p in model["parents"]]
        add(ws, model["name"], source=weights, parents=parents, kind=model["kind"])
        for _ in range(model["versions"] - 1):
            commit(ws, model["name"], source=weights)
    return ws


def start_cli(root: Path) -> tuple[Any, str, float]:
    """`lineage ui` as a user starts it; (process, URL, ms until the page answers)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    started = time.perf_counter()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lineage.cli.main",
            "-w",
            str(root),
            "ui",
            "--no-browser",
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    url = line.split(" at ")[1].split(" ")[0]
    with urllib.request.urlopen(url, timeout=60) as response:
        response.read()
    return process, url, (time.perf_counter() - started) * 1000


def server_figures(sizes: list[int], runs: int) -> None:
    print()
    print(
        "server: `lineage ui` on a real SQLite workspace (tiny weights); requests: median of", runs
    )
    print(f"{'versions':>9} {'start ms':>9} {'/api/graph ms':>14} {'/api/status ms':>15}")
    with tempfile.TemporaryDirectory(prefix="lineage-bench-ui-ws-") as tmp:
        for size in sizes:
            root = Path(tmp) / f"ws-{size}"
            make_workspace(root, size).close()
            process, url, start_ms = start_cli(root)
            try:
                figures = {}
                for path in ("api/graph", "api/status"):
                    samples = []
                    for _ in range(runs):
                        t0 = time.perf_counter()
                        with urllib.request.urlopen(url + path, timeout=600) as response:
                            response.read()
                        samples.append((time.perf_counter() - t0) * 1000)
                    figures[path] = statistics.median(samples)
            finally:
                process.terminate()
                process.wait(timeout=30)
            print(
                f"{size:>9} {start_ms:>9.0f} {figures['api/graph']:>14.0f} "
                f"{figures['api/status']:>15.0f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50,500,2000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-server", action="store_true", help="browser figures only")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    browser_figures(sizes, args.runs)
    if not args.no_server:
        server_figures(sizes, args.runs)


if __name__ == "__main__":
    main()
