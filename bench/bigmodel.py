"""Big-model benchmark: LLM-shaped sharded bf16 checkpoints of 0.5, 2 and 8 GB.

    .venv/bin/python bench/bigmodel.py [--sizes 0.5,2,8] [--work DIR] [--keep]
                                       [--skip-in-process]

For each size it writes a Hugging Face sharded checkpoint (4096x4096 bf16 projections
with small norms, 16 tensors a shard, ``model-0000i-of-0000n.safetensors`` plus
``model.safetensors.index.json``) and a fine-tune of it (every weight nudged by one or
two bf16 ulps, re-sharded differently, as an upstream re-release may be), then times,
through the `lineage` CLI (process start and imports included; `sync` before each):

    add base, add ft --parent base@1, checkout base@1, checkout ft@1,
    store verify, diff base@1 ft@1

and prints, per command: wall seconds, MB/s of the model (wall clock, and "cpu-bound":
per CPU-second x cores, the rate if the process had the machine to itself), and peak
RSS (measured by GNU time on each process; `getrusage` in a child would inherit the
peak of whatever started it). Each checkout is compared byte for byte with its source.
The pair's ratio is the two models' bytes over what the store holds.

Then the same add and checkout run in-process (the store alone, no CLI), so the CLI's
share can be told from the store's. Adds are durable (the store syncs the file system
before a version is visible): on a disk slower than the encoder they are disk-bound, so
the disk's own sequential write rate is measured first and printed alongside. Big files
are deleted after each size (unless --keep).

Targets (issue 14): peak RSS of every command < 1.5 GB at 8 GB, RSS(8 GB) / RSS(0.5 GB)
< 1.5, and 2 GB models added and checked out at >= 600 MB/s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lineage.testing import same_model_files  # noqa: E402

LINEAGE = [sys.executable, "-m", "lineage.cli.main"]
HIDDEN = 4096
PER_SHARD = 16
MB = 1e6
GB = 1e9
PARTS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


# ----------------------------------------------------------------------------- models
def tensor_names(size_gb: float) -> list[str]:
    """Names of 4096x4096 projections filling `size_gb`, layer by layer."""
    count = max(1, round(size_gb * GB / (HIDDEN * HIDDEN * 2)))
    return [
        f"model.layers.{i // len(PARTS)}.mlp.{PARTS[i % len(PARTS)]}.weight" for i in range(count)
    ]


def base_weights(rng: np.random.Generator, name_count: int) -> list[np.ndarray]:
    """bf16 bit patterns shaped like trained weights (|w| ~ 0.02): one normal tensor,
    then cheap variations of it (random mantissas), so no two tensors are equal."""
    first = rng.standard_normal(HIDDEN * HIDDEN, dtype=np.float32) * np.float32(0.02)
    bits = (first.view(np.uint32) >> 16).astype(np.uint16)
    out = [bits]
    for _ in range(name_count - 1):
        out.append(bits ^ rng.integers(0, 128, bits.size, dtype=np.uint16))  # 7 mantissa bits
    return out


def nudge(bits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A fine-tune step: every weight moved by one or two ulps, up or down."""
    step = rng.integers(1, 3, bits.size, dtype=np.int16) * rng.choice(
        np.array([-1, 1], dtype=np.int16), bits.size
    )
    return (bits.view(np.int16) + step).view(np.uint16)


def write_sharded(path: Path, names: list[str], tensors: list[np.ndarray], per_shard: int) -> int:
    """A sharded HF checkpoint (with a norm vector per shard); returns its size."""
    path.mkdir(parents=True)
    shards = -(-len(names) // per_shard)
    weight_map = {}
    total = 0
    for s in range(shards):
        shard = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        chunk = list(range(s * per_shard, min((s + 1) * per_shard, len(names))))
        norm = np.full(HIDDEN, 0x3F80, dtype=np.uint16)  # 1.0 in bf16
        entries = [(f"model.norm_{s}.weight", [HIDDEN], norm)]
        entries += [(names[i], [HIDDEN, HIDDEN], tensors[i]) for i in chunk]
        header: dict[str, object] = {"__metadata__": {"format": "pt"}}
        offset = 0
        for name, shape, data in entries:
            header[name] = {
                "dtype": "BF16",
                "shape": shape,
                "data_offsets": [offset, offset + data.nbytes],
            }
            offset += data.nbytes
            weight_map[name] = shard
        text = json.dumps(header).encode()
        text += b" " * (-len(text) % 8)
        with open(path / shard, "wb") as f:
            f.write(struct.pack("<Q", len(text)) + text)
            for _, _, data in entries:
                f.write(memoryview(data).cast("B"))
        total += 8 + len(text) + offset
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (path / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    (path / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": HIDDEN}))
    return sum(p.stat().st_size for p in path.iterdir())


def make_pair(work: Path, size_gb: float) -> tuple[Path, Path, int]:
    rng = np.random.default_rng(int(size_gb * 1000))
    names = tensor_names(size_gb)
    tensors = base_weights(rng, len(names))
    base = work / "base"
    size = write_sharded(base, names, tensors, PER_SHARD)
    tuned = [nudge(t, rng) for t in tensors]
    del tensors
    write_sharded(work / "ft", names, tuned, PER_SHARD - 4)  # re-sharded: other cuts
    return base, work / "ft", size


# ----------------------------------------------------------------------------- timing
@dataclass
class Run:
    what: str
    wall: float
    peak_mb: float
    cpu: float = 0.0  # user + system seconds of the process
    ok: bool = True


def timed(args: list[str], cwd: Path, what: str) -> Run:
    """Run a command under GNU time: wall seconds, CPU seconds and peak RSS of that
    process alone. Dirty pages of earlier steps are written out first, so each command
    starts from the same state of the page cache."""
    os.sync()
    report = Path(tempfile.mktemp(prefix="lineage-time-"))
    start = time.perf_counter()
    result = subprocess.run(
        ["/usr/bin/time", "-f", "%M %U %S", "-o", str(report), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    peak_kib, user, system = report.read_text().split()[-3:]
    report.unlink()
    if result.returncode != 0:
        print(f"  {what} failed ({result.returncode}): {result.stderr.strip()[-400:]}")
    return Run(
        what, wall, int(peak_kib) / 1024, float(user) + float(system), result.returncode == 0
    )


_IN_PROCESS = r"""
import json, sys, time
from pathlib import Path
from lineage.store import ObjectStore, checkout, ingest
def peak_mb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
store = ObjectStore.open(sys.argv[2])
out = {}
if sys.argv[1] == "add":
    t = time.perf_counter(); base = ingest(store, Path(sys.argv[3])); store.put_manifest(base)
    out["add base"] = time.perf_counter() - t
    t = time.perf_counter(); ft = ingest(store, Path(sys.argv[4]), parents=[base])
    store.put_manifest(ft); out["add ft"] = time.perf_counter() - t
    ids = [store.put_manifest(base), store.put_manifest(ft)]
    (Path(sys.argv[2]) / "ids.json").write_text(json.dumps(ids))
else:
    ids = json.loads((Path(sys.argv[2]) / "ids.json").read_text())
    which = int(sys.argv[3])
    t = time.perf_counter()
    checkout(store, store.get_manifest(ids[which]), Path(sys.argv[4]))
    out[("checkout base", "checkout ft")[which]] = time.perf_counter() - t
out["peak_mb"] = peak_mb()
print(json.dumps(out))
"""


def in_process(args: list[str]) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", _IN_PROCESS, *args], capture_output=True, text=True, env=env
    )
    if result.returncode:
        raise SystemExit(f"in-process run failed: {result.stderr[-600:]}")
    return dict(json.loads(result.stdout))


def disk_write_rate(work: Path) -> float:
    """Sequential write MB/s of the disk under `work`, synced (what a durable add waits for)."""
    path = work / "disk-probe"
    block = os.urandom(16 << 20)
    start = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(64):
            os.write(fd, block)
        os.fsync(fd)
    finally:
        os.close(fd)
        path.unlink()
    return 64 * len(block) / MB / (time.perf_counter() - start)


# ----------------------------------------------------------------------------- main
def bench_size(work: Path, size_gb: float, in_proc: bool) -> dict[str, object]:
    work.mkdir(parents=True)
    t = time.perf_counter()
    base, ft, size = make_pair(work, size_gb)
    print(
        f"\n{size / GB:.2f} GB model ({len(list(base.glob('*.safetensors')))} shards) "
        f"and its fine-tune written in {time.perf_counter() - t:.0f} s",
        flush=True,
    )
    ws = work / "ws"
    subprocess.run([*LINEAGE, "init", str(ws), "--no-tracking"], check=True, capture_output=True)
    runs = [
        timed([*LINEAGE, "add", "base", "--from", str(base)], ws, "add base"),
        timed([*LINEAGE, "add", "ft", "--from", str(ft), "--parent", "base@1"], ws, "add ft"),
    ]
    stats = json.loads(
        subprocess.run(
            [*LINEAGE, "store", "stats", "--json"],
            cwd=ws,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    stored = stats["total"]["stored_bytes"]
    for ref, source in (("base@1", base), ("ft@1", ft)):
        out = work / f"out-{ref.split('@')[0]}"
        run = timed([*LINEAGE, "checkout", ref, str(out)], ws, f"checkout {ref.split('@')[0]}")
        run.ok = run.ok and same_model_files(source, out)
        runs.append(run)
        shutil.rmtree(out)
    runs.append(timed([*LINEAGE, "store", "verify"], ws, "verify"))
    runs.append(timed([*LINEAGE, "diff", "base@1", "ft@1", "--json"], ws, "diff"))
    cores = os.cpu_count() or 1
    for run in runs:
        volume = 2 * size if run.what in ("verify", "diff") else size
        print(
            f"  cli {run.what:14s} {run.wall:6.2f} s {volume / MB / run.wall:6.0f} MB/s "
            f"(cpu-bound {volume / MB / run.cpu * cores:5.0f})  peak RSS {run.peak_mb:5.0f} MB"
            f"{' (both models)' if volume > size else ''}{'' if run.ok else '  FAILED'}"
        )
    ratio = 2 * size / stored
    print(
        f"  pair ratio {ratio:.2f}x ({2 * size / MB:.0f} MB as files, {stored / MB:.0f} MB stored)"
    )
    result: dict[str, object] = {"size": size, "runs": runs, "ratio": ratio}
    shutil.rmtree(ws)  # room on the disk for the in-process run
    if in_proc:
        store = work / "in-process"
        figures = in_process(["add", str(store), str(base), str(ft)])
        peaks = {"add": figures.pop("peak_mb")}
        exact = True
        for which, source in enumerate((base, ft)):
            out = work / "ip-out"
            checked = in_process(["checkout", str(store), str(which), str(out)])
            peaks[f"checkout {('base', 'ft')[which]}"] = checked.pop("peak_mb")
            figures.update(checked)
            exact = exact and same_model_files(source, out)
            shutil.rmtree(out)
        for label, seconds in figures.items():
            print(f"  in-process {label:14s} {seconds:6.2f} s {size / MB / seconds:7.0f} MB/s")
        print(
            "  in-process peak RSS: "
            + ", ".join(f"{k} {v:.0f} MB" for k, v in peaks.items())
            + f"; checkouts exact: {exact}"
        )
        result["in_process"] = figures
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="0.5,2,8", help="model sizes in GB, comma-separated")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--keep", action="store_true", help="keep the models and stores")
    parser.add_argument("--skip-in-process", action="store_true")
    args = parser.parse_args()
    if not Path("/usr/bin/time").exists():
        raise SystemExit("needs GNU time (/usr/bin/time) to measure each process's peak RSS")
    sizes = [float(s) for s in args.sizes.split(",")]
    root = Path(tempfile.mkdtemp(prefix="lineage-bigmodel-", dir=args.work))
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    print(f"disk under {root}: {disk_write_rate(root):.0f} MB/s sequential write, synced")
    results = {}
    try:
        for size_gb in sizes:
            work = root / f"{size_gb:g}GB"
            try:
                results[size_gb] = bench_size(work, size_gb, not args.skip_in_process)
            finally:
                if not args.keep:
                    shutil.rmtree(work, ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    if len(results) > 1:
        small, large = results[min(results)], results[max(results)]
        print()
        for what in ("add base", "add ft", "checkout base", "checkout ft", "verify", "diff"):
            a = next(r for r in small["runs"] if r.what == what)  # type: ignore[attr-defined]
            b = next(r for r in large["runs"] if r.what == what)  # type: ignore[attr-defined]
            print(
                f"RSS({max(results):g} GB) / RSS({min(results):g} GB), {what}: "
                f"{b.peak_mb:.0f} / {a.peak_mb:.0f} MB = {b.peak_mb / a.peak_mb:.2f}"
            )
    print(f"load average at end {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
