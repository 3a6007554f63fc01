"""CLI latency: how long `lineage` takes to answer, process start included.

Builds a small workspace (a base with a fine-tune, an adapter and a next version; tiny
weights, registered with the CLI itself), then runs each read command N times as a
fresh process, as a shell would, and `lineage init` N times into fresh folders. Prints
the median wall time and the median CPU time (user + system of the child: less
sensitive to other load on the machine) of each, next to peers measured in the same
run: the bare interpreter, and importing the libraries a read command cannot avoid.

Run: .venv/bin/python bench/cli.py [--runs 15]
Targets: each read command < 0.3 s, `init` < 2 s (median wall time).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

READ_COMMANDS: list[list[str]] = [
    ["--version"],
    ["--help"],
    ["models"],
    ["log", "base"],
    ["show", "ft@1"],
    ["descendants", "base@1"],
    ["graph"],
]
READ_TARGET_S = 0.3
INIT_TARGET_S = 2.0


def lineage_command() -> list[str]:
    """The console script next to this interpreter (what users run), else `-m`."""
    script = Path(sys.executable).with_name("lineage")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "lineage.cli.main"]


def timed(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one run of `args` as a child process."""
    started = time.perf_counter()
    child = subprocess.Popen(
        args, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    if status != 0:
        error = child.stderr.read().decode() if child.stderr else ""
        raise SystemExit(f"{' '.join(args)} failed: {error.strip()}")
    if child.stderr:
        child.stderr.close()
    return wall, usage.ru_utime + usage.ru_stime


def build_workspace(root: Path, lineage: list[str], env: dict[str, str]) -> None:
    from lineage.testing import write_tiny_weights

    weights = root / "weights"
    subprocess.run([*lineage, "init", str(root / "ws")], check=True, env=env, capture_output=True)
    steps = [
        ["add", "base", "--from", str(write_tiny_weights(weights / "b", 0))],
        ["add", "ft", "--from", str(write_tiny_weights(weights / "f", 1)), "-p", "base@1"],
        ["add", "lo", "--from", str(write_tiny_weights(weights / "l", 2)), "-p", "base@1"],
        ["commit", "base", "--from", str(write_tiny_weights(weights / "b2", 3))],
    ]
    for step in steps:
        subprocess.run([*lineage, *step], check=True, env=env, capture_output=True, cwd=root / "ws")


def report(name: str, samples: list[tuple[float, float]], target: float | None) -> str:
    walls = sorted(wall for wall, _ in samples)
    cpu = statistics.median(c for _, c in samples)
    wall = statistics.median(walls)
    verdict = "" if target is None else ("  ok" if wall < target else f"  over {target:g} s")
    return f"{name:<28} {wall:7.3f} {cpu:7.3f} {walls[0]:7.3f} {walls[-1]:7.3f}{verdict}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="runs per command (median)")
    args = parser.parse_args()
    lineage = lineage_command()
    env = {**os.environ, "LINEAGE_MLFLOW_WRITER": "deferred"}  # no writer competing
    env.pop("LINEAGE_WORKSPACE", None)
    scratch = Path(tempfile.mkdtemp(prefix="lineage-bench-cli-"))
    try:
        build_workspace(scratch, lineage, env)
        ws = scratch / "ws"
        print(f"lineage CLI latency, {args.runs} runs each, {os.cpu_count()} CPUs")
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"{'command':<28} {'median':>7} {'cpu':>7} {'min':>7} {'max':>7}  (seconds)")
        peers = {
            "python -c pass": [sys.executable, "-c", "pass"],
            # What every command imports: the CLI framework (typer needs pydantic), the
            # terminal renderer and the graph DB's driver.
            "python: import typer, rich, sqlite3": [
                sys.executable,
                "-c",
                "import typer, pydantic, rich.console, rich.table, sqlite3",
            ],
            # What the graph layer used to import on every command (for comparison).
            "python: import sqlalchemy": [sys.executable, "-c", "import sqlalchemy"],
        }
        for name, command in peers.items():
            samples = [timed(command, ws, env) for _ in range(args.runs)]
            print(report(f"(peer) {name}", samples, None))
        for command in READ_COMMANDS:
            samples = [timed([*lineage, *command], ws, env) for _ in range(args.runs)]
            print(report("lineage " + " ".join(command), samples, READ_TARGET_S))
        samples = []
        for run in range(args.runs):
            samples.append(timed([*lineage, "init", str(scratch / f"init-{run}")], scratch, env))
        print(report("lineage init DIR", samples, INIT_TARGET_S))
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
