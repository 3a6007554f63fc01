"""Fault injection: kill writers at random points, damage bytes, run writers at once,
and count what was lost.

    .venv/bin/python bench/faults.py [--runs N] [--flips N] [--concurrent N]
                                     [--cascade-runs N] [--seed S] [--keep DIR]

Everything runs through the real `lineage` CLI in a fresh workspace, on models of a few
MB (each tensor 4 MB):

1. kills: N times, one of `add`, `commit` (a nudged next version), `checkout` or
   `store gc` (with every file in the store aged past gc's grace period first, so gc
   really deletes) is started and SIGKILLed at a random moment of its run;
2. damage: random bytes of a random object or manifest are flipped; `store verify` must
   name every version whose checkout fails, checkout must never return wrong bytes, and
   `store verify --repair --from <the source folders> --from <a manifest backup>` must
   bring every version back;
3. concurrency: adds, a commit, a checkout and a gc run at the same moment;
4. cascade (when the toy recipes of tests/cascade are there): `lineage cascade` re-deriving
   a child with a deterministic toy recipe, killed at a random moment.

After every step, every version the graph records is checked out (in this process,
through the store's verified reads) and compared byte for byte with the folder it was
made from (for cascade-derived versions: with the toy recipe's output on the checked-out
parent). It prints the counts: runs, versions lost (recorded, or known good before,
and no longer readable exactly), corrupt versions undetected (unreadable while `store
verify` said all was well) and wrong checkouts (a checkout that succeeded with other
bytes). All three must be 0; the exit status is 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TOY_DIR = ROOT / "tests" / "cascade"  # toy recipes (a cascade's versions re-make with them)
for folder in (ROOT, TOY_DIR):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import numpy as np  # noqa: E402
from safetensors.numpy import load_file, save_file  # noqa: E402

from lineage.ops.add import add  # noqa: E402
from lineage.ops.checkout import checkout  # noqa: E402
from lineage.testing import same_model_files as same_tree  # noqa: E402

LINEAGE = [sys.executable, "-m", "lineage.cli.main"]
TENSORS = 6
ELEMENTS = 1 << 20  # 4 MB of float32 per tensor


@dataclass
class Counts:
    runs: int = 0
    killed: int = 0
    versions_lost: int = 0
    corrupt_undetected: int = 0
    wrong_checkouts: int = 0
    details: list[str] = field(default_factory=list)

    def problem(self, kind: str, text: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        self.details.append(f"{kind}: {text}")


class Lab:
    """A workspace, the source folders of its versions, and the checks."""

    def __init__(self, base: Path, seed: int) -> None:
        self.base = base
        self.root = base / "ws"
        self.sources = base / "sources"
        self.sources.mkdir(parents=True)
        self.rng = random.Random(seed)
        self.np_rng = np.random.default_rng(seed)
        self.counts = Counts()
        self.known: dict[str, str] = {}  # ref -> source tag, checked exact at least once
        self.latest_source: dict[str, str] = {}  # model -> tag of its newest source
        self.serial = 0
        self.env = {**os.environ, "LINEAGE_AUTHOR": "faults"}
        self.env.pop("LINEAGE_WORKSPACE", None)
        self.env["PYTHONPATH"] = os.pathsep.join([str(TOY_DIR), str(ROOT)])
        self.env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
        self.env["PREFECT_LOGGING_LEVEL"] = "ERROR"
        self.env.pop("PREFECT_API_URL", None)
        result = self.cli(["init", str(self.root), "--no-tracking"], cwd=base)
        if result.returncode:
            raise SystemExit(f"lineage init failed: {result.stderr}")

    # -- processes -----------------------------------------------------------------
    def cli(self, args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*LINEAGE, *args],
            cwd=cwd or self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    def spawn(self, args: list[str]) -> subprocess.Popen[str]:
        """Start a command in its own process group (`kill` takes all of it down, as a
        crash of its machine would: a cascade's Prefect server and step processes too)."""
        log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115  (closed by `finish`)
        proc = subprocess.Popen(
            [*LINEAGE, *args],
            cwd=self.root,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=log,
            text=True,
            start_new_session=True,
        )
        proc.log = log  # type: ignore[attr-defined]
        return proc

    @staticmethod
    def kill(proc: subprocess.Popen[str]) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    @staticmethod
    def finish(proc: subprocess.Popen[str]) -> str:
        """Wait for a command; its stderr."""
        proc.wait()
        log = proc.log  # type: ignore[attr-defined]
        log.seek(0)
        text = str(log.read())
        log.close()
        return text

    # -- sources -------------------------------------------------------------------
    def new_source(self, like: str | None = None) -> str:
        """A new source folder: random weights, or a nudge of source `like`."""
        self.serial += 1
        tag = f"s{self.serial:04d}"
        out = self.sources / tag
        out.mkdir()
        if like is None:
            tensors = {
                f"layer.{i}.weight": self.np_rng.standard_normal(ELEMENTS).astype(np.float32)
                for i in range(TENSORS)
            }
        else:
            previous = load_file(str(self.sources / like / "model.safetensors"))
            noise = 1 + 1e-3 * self.np_rng.standard_normal(ELEMENTS).astype(np.float32)
            tensors = {k: (v * noise).astype(np.float32) for k, v in previous.items()}
        save_file(tensors, str(out / "model.safetensors"))
        (out / "config.json").write_text(json.dumps({"model_type": "toy", "tag": tag}) + "\n")
        return tag

    # -- commands ------------------------------------------------------------------
    def add_args(self, name: str, tag: str) -> list[str]:
        return ["add", name, "--from", str(self.sources / tag), "-m", f"src:{tag}"]

    def commit_args(self, name: str, tag: str) -> list[str]:
        return ["commit", name, "--from", str(self.sources / tag), "-m", f"src:{tag}"]

    def age_store(self) -> None:
        """Make every store file look older than gc's grace period (an hour)."""
        old = time.time() - 7200
        for path in (self.root / ".lineage" / "objects").rglob("*"):
            if path.is_file():
                os.utime(path, (old, old))

    # -- checks --------------------------------------------------------------------
    def versions(self) -> dict[str, Any]:
        """Every recorded version (ref -> VersionInfo), read fresh from the graph."""
        from lineage.workspace import Workspace

        ws = Workspace.open(self.root)
        try:
            return {v.ref: v for m in ws.models() for v in ws.log(m.name)}
        finally:
            ws.close()

    def expected(self, version: Any) -> Path | None:
        """The folder a version must check out to (None: unknown)."""
        if version.message.startswith("src:"):
            return self.sources / version.message[4:]
        if version.recipe_id == "toy_recipes:scale" and version.parents:
            return self.remake(version)
        return None

    def remake(self, version: Any) -> Path | None:
        """Run the toy recipe on the version's (checked-out) parent, as the cascade did."""
        import toy_recipes

        parent = version.derivation_parents[0].ref
        parent_dir = self.base / "remake" / parent.replace("@", "-")
        out = self.base / "remake" / version.ref.replace("@", "-")
        shutil.rmtree(parent_dir, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
        if self.checkout_in_process(parent, parent_dir) is not None:
            return None
        out.mkdir(parents=True)
        params = argparse.Namespace(**(version.recipe_params or {}))
        toy_recipes.scale([parent_dir], params, None, out)
        return out

    def checkout_in_process(self, ref: str, out: Path) -> str | None:
        """Check a version out through the store's verified reads; the error, or None."""
        from lineage.errors import LineageError
        from lineage.workspace import Workspace

        ws = Workspace.open(self.root)
        try:
            checkout(ws, ref, out, force=True)
        except LineageError as exc:
            return str(exc)
        finally:
            ws.close()
        return None

    def check(self, step: str, verify_said_ok: dict[str, bool] | None = None) -> None:
        """Check out every version and compare it with what it was made from."""
        recorded = self.versions()
        for ref in sorted(set(self.known) - set(recorded)):
            self.counts.problem("versions_lost", f"{step}: {ref} vanished from the graph")
            del self.known[ref]
        for ref, version in sorted(recorded.items()):
            want = self.expected(version)
            out = self.base / "check" / ref.replace("@", "-")
            shutil.rmtree(out, ignore_errors=True)
            error = self.checkout_in_process(ref, out)
            if error is not None:
                if verify_said_ok is not None and verify_said_ok.get(ref, False):
                    self.counts.problem("corrupt_undetected", f"{step}: {ref}: {error}")
                elif verify_said_ok is None:
                    self.counts.problem("versions_lost", f"{step}: {ref} unreadable: {error}")
                continue
            if want is None:
                continue
            if not same_tree(want, out):
                self.counts.problem("wrong_checkouts", f"{step}: {ref} differs from {want}")
                continue
            self.known[ref] = str(want)
            shutil.rmtree(out, ignore_errors=True)
        newest: dict[str, Any] = {}
        for version in recorded.values():
            if version.number > getattr(newest.get(version.model), "number", 0):
                newest[version.model] = version
        for model, version in newest.items():
            if version.message.startswith("src:"):
                self.latest_source[model] = version.message[4:]

    def verify_report(self) -> dict[str, bool]:
        result = self.cli(["store", "verify", "--json"])
        report = json.loads(result.stdout)
        return {ref: bool(v["ok"]) for ref, v in report["versions"].items()}


# ----------------------------------------------------------------------------- phases
def calibrate(lab: Lab) -> dict[str, float]:
    """One unkilled run of each writer: how long each takes here."""
    took: dict[str, float] = {}
    first = lab.new_source()
    start = time.perf_counter()
    assert lab.cli(lab.add_args("m0", first)).returncode == 0
    took["add"] = time.perf_counter() - start
    nudged = lab.new_source(like=first)
    start = time.perf_counter()
    assert lab.cli(lab.commit_args("m0", nudged)).returncode == 0
    took["commit"] = time.perf_counter() - start
    start = time.perf_counter()
    assert lab.cli(["checkout", "m0@2", str(lab.base / "calibrate")]).returncode == 0
    took["checkout"] = time.perf_counter() - start
    lab.age_store()
    start = time.perf_counter()
    assert lab.cli(["store", "gc"]).returncode == 0
    took["gc"] = time.perf_counter() - start
    lab.check("calibrate")
    return took


def kill_runs(lab: Lab, runs: int, took: dict[str, float]) -> None:
    for i in range(runs):
        op = lab.rng.choice(["add", "commit", "commit", "checkout", "gc"])
        models = sorted(lab.latest_source)
        target: Path | None = None
        ref = ""
        if op == "add":
            tag = lab.new_source()
            args = lab.add_args(f"m{i + 1}", tag)
        elif op == "commit":
            model = lab.rng.choice(models)
            tag = lab.new_source(like=lab.latest_source[model])
            args = lab.commit_args(model, tag)
        elif op == "checkout":
            ref = lab.rng.choice(sorted(lab.known))
            target = lab.base / f"co-{i}"
            args = ["checkout", ref, str(target)]
        else:
            lab.age_store()
            args = ["store", "gc"]
        proc = lab.spawn(args)
        time.sleep(lab.rng.uniform(0.2, 1.2) * took[op])
        killed = proc.poll() is None
        if killed:
            lab.kill(proc)
            lab.counts.killed += 1
        stderr = lab.finish(proc)
        lab.counts.runs += 1
        if not killed and proc.returncode != 0:
            lab.counts.details.append(f"kill run {i}: {op} failed unkilled: {stderr.strip()}")
        if target is not None and target.exists() and not same_tree(Path(lab.known[ref]), target):
            lab.counts.problem("wrong_checkouts", f"killed checkout left a wrong {target}")
        lab.check(f"kill run {i} ({op}{', killed' if killed else ''})")


def damage_runs(lab: Lab, rounds: int) -> None:
    store = lab.root / ".lineage" / "objects"
    backup = lab.base / "manifest-backup"
    for i in range(rounds):
        # a backup of the manifests (small): what another store holds in real life
        shutil.rmtree(backup, ignore_errors=True)
        (backup / "objects").mkdir(parents=True)
        shutil.copytree(store / "manifests", backup / "manifests")
        shutil.copy(store / "store.json", backup / "store.json")
        candidates = [p for p in (store / "objects").rglob("*") if p.is_file()]
        candidates += list((store / "manifests").glob("*.json"))
        victims = lab.rng.sample(candidates, k=min(len(candidates), lab.rng.randint(1, 3)))
        for victim in victims:
            data = bytearray(victim.read_bytes())
            for _ in range(lab.rng.randint(1, 4)):
                data[lab.rng.randrange(len(data))] ^= 1 << lab.rng.randrange(8)
            victim.chmod(0o644)
            victim.write_bytes(bytes(data))
        lab.counts.runs += 1
        said_ok = lab.verify_report()
        lab.check(f"damage round {i}", verify_said_ok=said_ok)
        result = lab.cli(
            ["store", "verify", "--repair", "--from", str(lab.sources), "--from", str(backup)]
        )
        if result.returncode != 0:
            lab.counts.details.append(f"damage round {i}: repair left: {result.stderr.strip()}")
        lab.check(f"after repair {i}")


def concurrent_runs(lab: Lab, rounds: int) -> None:
    for i in range(rounds):
        models = sorted(lab.latest_source)
        model = lab.rng.choice(models)
        jobs: list[tuple[str, list[str], Path | None, str]] = []
        for j in range(2):
            tag = lab.new_source()
            jobs.append(("add", lab.add_args(f"c{i}-{j}", tag), None, ""))
        tag = lab.new_source(like=lab.latest_source[model])
        jobs.append(("commit", lab.commit_args(model, tag), None, ""))
        ref = lab.rng.choice(sorted(lab.known))
        target = lab.base / f"cc-{i}"
        jobs.append(("checkout", ["checkout", ref, str(target)], target, ref))
        jobs.append(("gc", ["store", "gc"], None, ""))
        procs = [(op, lab.spawn(args), out, r) for op, args, out, r in jobs]
        for op, proc, out, r in procs:
            stderr = lab.finish(proc)
            lab.counts.runs += 1
            if proc.returncode != 0:
                lab.counts.details.append(f"concurrent {i}: {op} failed: {stderr.strip()}")
            if out is not None and proc.returncode == 0 and not same_tree(Path(lab.known[r]), out):
                lab.counts.problem("wrong_checkouts", f"concurrent checkout of {r} differs")
        lab.check(f"concurrent round {i}")


def cascade_runs(lab: Lab, runs: int) -> None:
    """A toy-recipe child re-derived by `lineage cascade`, killed at a random moment."""
    if not (TOY_DIR / "toy_recipes.py").is_file():
        print("(no tests/cascade/toy_recipes.py: cascade runs skipped)")
        return
    from lineage.records import Provenance
    from lineage.workspace import Workspace

    base_tag = lab.new_source()
    assert lab.cli(["trust", "toy_recipes"]).returncode == 0  # `toy_recipes:scale` is user code
    assert lab.cli(lab.add_args("cbase", base_tag)).returncode == 0
    child = lab.sources / "cft-made"
    child.mkdir()
    import toy_recipes

    toy_recipes.scale([lab.sources / base_tag], argparse.Namespace(factor=0.5), None, child)
    ws = Workspace.open(lab.root)
    try:
        add(
            ws,
            "cft",
            source=child,
            parents=["cbase@1"],
            kind="finetune",
            provenance=Provenance(recipe_id="toy_recipes:scale", recipe_params={"factor": 0.5}),
        )
    finally:
        ws.close()
    lab.check("cascade setup")
    for i in range(runs):
        tag = lab.new_source(like=lab.latest_source["cbase"])
        assert lab.cli(lab.commit_args("cbase", tag)).returncode == 0
        proc = lab.spawn(["cascade", "cbase@latest", "--runner", "process"])
        time.sleep(lab.rng.uniform(1.0, 25.0))
        killed = proc.poll() is None
        if killed:
            lab.kill(proc)
            lab.counts.killed += 1
        stderr = lab.finish(proc)
        lab.counts.runs += 1
        if not killed and proc.returncode != 0:
            lab.counts.details.append(f"cascade run {i} failed unkilled: {stderr.strip()[-300:]}")
        lab.check(f"cascade run {i}{' (killed)' if killed else ''}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=12, help="killed writer runs")
    parser.add_argument("--flips", type=int, default=4, help="rounds of flipped bytes")
    parser.add_argument("--concurrent", type=int, default=2, help="rounds of writers at once")
    parser.add_argument("--cascade-runs", type=int, default=1, help="killed cascades (~25 s)")
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--keep", type=Path, help="work here and keep it (default: temp)")
    args = parser.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="lineage-faults-"))
    print(f"seed {args.seed}; workspace under {base}", flush=True)
    lab = Lab(base, args.seed)
    start = time.perf_counter()
    try:
        took = calibrate(lab)
        print("unkilled run times (s): " + ", ".join(f"{k} {v:.2f}" for k, v in took.items()))
        kill_runs(lab, args.runs, took)
        damage_runs(lab, args.flips)
        concurrent_runs(lab, args.concurrent)
        cascade_runs(lab, args.cascade_runs)
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)
    c = lab.counts
    print(f"\nfinished in {time.perf_counter() - start:.0f} s")
    for line in c.details:
        print(f"  {line}")
    print(f"runs: {c.runs} ({c.killed} killed mid-run)")
    print(f"versions lost: {c.versions_lost}")
    print(f"corrupt versions undetected: {c.corrupt_undetected}")
    print(f"wrong checkouts: {c.wrong_checkouts}")
    if c.versions_lost or c.corrupt_undetected or c.wrong_checkouts:
        sys.exit(1)


if __name__ == "__main__":
    main()
