"""Per-step overhead of the docker runner over the process runner.

Runs the same steps with both runners and prints median wall times and the difference
(target: under 1 s per step). Two steps: `probe` (the step machinery alone: start,
spec, result, teardown) and `probe` importing torch + transformers (what every real
derive or test step also pays, from the image's file system instead of the host's).

    python bench/container_overhead.py [--repeat 5] [--image lineage-task:latest]

Needs a Docker engine and the task image (`make image`).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from lineage.steps.runners import DockerRunner, ProcessRunner, Runner
from lineage.steps.spec import parse_spec

TARGET_S = 1.0
QUIET = logging.getLogger("bench.quiet")
QUIET.addHandler(logging.NullHandler())
QUIET.propagate = False


def time_step(runner: Runner, spec: dict[str, object], repeat: int, work: Path) -> list[float]:
    """Wall seconds of `repeat` runs of `spec` (after one warm-up run)."""
    times = []
    for i in range(repeat + 1):
        out = work / f"{runner.name}-{i}"
        started = time.perf_counter()
        runner.run_step(parse_spec({**spec, "out": str(out)}), timeout_s=300, logger=QUIET)
        elapsed = time.perf_counter() - started
        shutil.rmtree(out, ignore_errors=True)
        if i:  # the first run warms page caches on both sides
            times.append(elapsed)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--image", default=None, help="task image (default lineage-task:latest)")
    args = parser.parse_args(argv)

    process, docker = ProcessRunner(), DockerRunner(args.image)
    steps = {
        "probe (bare step)": {"action": "probe"},
        "probe + import torch, transformers": {
            "action": "probe",
            "imports": ["torch", "transformers"],
        },
    }
    print(f"container overhead per step, median of {args.repeat} runs (after a warm-up)")
    print(f"docker image: {docker.image}\n")
    print(f"{'step':<38}{'process':>10}{'docker':>10}{'overhead':>10}")
    worst = 0.0
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        work = Path(tmp)
        for label, spec in steps.items():
            p = statistics.median(time_step(process, spec, args.repeat, work))
            d = statistics.median(time_step(docker, spec, args.repeat, work))
            worst = max(worst, d - p)
            print(f"{label:<38}{p:>9.3f}s{d:>9.3f}s{d - p:>+9.3f}s")
    verdict = "meets" if worst < TARGET_S else "MISSES"
    print(f"\nworst overhead {worst:.3f} s: {verdict} the {TARGET_S:g} s target")
    return 0 if worst < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
