"""Storage at LLM scale, in miniature (issue 14, section 2): sharded checkpoints round-trip
and match tensors across shards; memory stays under a configured budget whatever the
model's size; the store commands import none of the heavy libraries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

import lineage
from lineage.store import ObjectStore, checkout, diff_manifests, ingest, stats

from .helpers import same_tree, write_safetensors


def _bf16(values: np.ndarray) -> np.ndarray:
    """bf16 bit patterns (as uint16) of float32 values, the top half of each."""
    return (values.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)


def _sharded(path: Path, tensors: dict[str, np.ndarray], shards: int) -> Path:
    """A Hugging Face sharded checkpoint: model-0000i-of-0000n.safetensors + index."""
    path.mkdir(parents=True)
    names = sorted(tensors)
    per = -(-len(names) // shards)
    weight_map = {}
    for i in range(shards):
        shard = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        chunk = names[i * per : (i + 1) * per]
        write_safetensors(
            path / shard, {n: ("BF16", tensors[n].shape, tensors[n].tobytes()) for n in chunk}
        )
        weight_map.update({n: shard for n in chunk})
    total = sum(t.nbytes for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (path / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    (path / "config.json").write_text('{"model_type": "llama"}\n')
    return path


def _llm(seed: int, layers: int = 6, width: int = 256) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {"model.embed_tokens.weight": _bf16(rng.standard_normal((512, width)) * 0.02)}
    for i in range(layers):
        for part in ("q_proj", "k_proj", "v_proj", "o_proj"):
            out[f"model.layers.{i}.self_attn.{part}.weight"] = _bf16(
                rng.standard_normal((width, width)) * 0.02
            )
    return out


def _nudge(tensors: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """A fine-tune in bf16: every weight moved by a small relative step."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, bits in tensors.items():
        values = (bits.astype(np.uint32) << 16).view(np.float32)
        out[name] = _bf16(values * (1 + 0.01 * rng.standard_normal(values.shape)))
    return out


def test_sharded_checkpoint_round_trips_and_dedups_when_resharded(tmp_path: Path) -> None:
    store = ObjectStore.open(tmp_path / "objects")
    weights = _llm(0)
    three = _sharded(tmp_path / "three", weights, 3)
    first = ingest(store, three)
    ids = {"m@1": store.put_manifest(first)}
    assert len([f for f in first.files if f.kind == "safetensors"]) == 3
    two = _sharded(tmp_path / "two", weights, 2)  # the same weights, re-sharded upstream
    second = ingest(store, two, parents=[first])
    ids["m@2"] = store.put_manifest(second)
    report = stats(store, ids)
    tensors = len(weights)
    assert report.versions["m@2"].encodings == {"dedup": tensors}
    assert report.versions["m@2"].stored_bytes < 4096  # shard headers and the index only
    store.cache.clear()
    checkout(store, second, tmp_path / "out-two")
    checkout(store, first, tmp_path / "out-three")
    assert same_tree(two, tmp_path / "out-two") and same_tree(three, tmp_path / "out-three")


def test_a_delta_matches_tensors_across_shard_boundaries(tmp_path: Path) -> None:
    store = ObjectStore.open(tmp_path / "objects")
    weights = _llm(0)
    base = ingest(store, _sharded(tmp_path / "base", weights, 4))
    store.put_manifest(base)
    tuned_dir = _sharded(tmp_path / "tuned", _nudge(weights, 1), 3)  # different shard cuts
    tuned = ingest(store, tuned_dir, parents=[base])
    store.put_manifest(tuned)
    base_ids = {t.name: t.object for _, t in base.tensors()}
    for _, tensor in tuned.tensors():
        assert store.object_header(tensor.object).get("base") == base_ids[tensor.name]
    report = stats(
        store, {"base@1": store.put_manifest(base), "tuned@1": store.put_manifest(tuned)}
    )
    assert report.versions["tuned@1"].stored_bytes < 0.7 * report.versions["base@1"].stored_bytes
    store.cache.clear()
    checkout(store, tuned, tmp_path / "out")
    assert same_tree(tuned_dir, tmp_path / "out")
    changed = diff_manifests(store, base, tuned).changed
    assert len(changed) == len(weights) and all(0 < c.relative_l2 < 0.05 for c in changed)


_MEASURE = textwrap.dedent(
    """
    import json, resource, sys
    from pathlib import Path
    from lineage.store import ObjectStore, checkout, ingest, verify

    def rss_kib():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() // 1024

    def peak_kib():
        # VmHWM, not getrusage: ru_maxrss keeps the peak of the process that started us
        # (it survives exec), here a test runner with torch loaded
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])

    command, root, src, budget = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
    store = ObjectStore.open(root, memory_bytes=budget)
    if command != "add":
        mid = (Path(root) / "mid").read_text()
        manifest = store.get_manifest(mid)
    before = rss_kib()
    if command == "add":
        (Path(root) / "mid").write_text(store.put_manifest(ingest(store, src)))
    elif command == "checkout":
        checkout(store, manifest, Path(sys.argv[5]))
    else:
        assert verify(store, {"m@1": mid}).ok
    print(json.dumps({"before_kib": before, "peak_kib": peak_kib()}))
    """
)


def _peak(command: str, root: Path, src: Path, budget: int, *extra: str) -> dict[str, int]:
    env = {**os.environ, "PYTHONPATH": str(Path(lineage.__file__).parents[1])}
    result = subprocess.run(
        [sys.executable, "-c", _MEASURE, command, str(root), str(src), str(budget), *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_memory_stays_under_the_budget_for_a_model_several_times_larger(tmp_path: Path) -> None:
    budget = 48 << 20
    model = tmp_path / "model"
    model.mkdir()
    rng = np.random.default_rng(0)
    for shard in range(4):  # 4 x 48 MB = 4 budgets, in tensors of 4 MB
        tensors = {
            f"layer.{shard}.{i}": rng.standard_normal(1 << 20).astype(np.float32) for i in range(12)
        }
        save_file(tensors, str(model / f"model-{shard + 1:05d}-of-00004.safetensors"))
    size = sum(p.stat().st_size for p in model.iterdir())
    assert size >= 4 * budget
    root = tmp_path / "objects"
    for command in ("add", "checkout", "verify"):
        figures = _peak(command, root, model, budget, str(tmp_path / "out"))
        grown = (figures["peak_kib"] - figures["before_kib"]) * 1024
        assert grown < budget, (
            f"{command}: {grown / 1e6:.0f} MB over a {budget / 1e6:.0f} MB budget"
        )
    assert same_tree(model, tmp_path / "out")


@pytest.mark.parametrize(
    "args",
    [
        ["add", "b", "--from", "{model}"],
        ["commit", "a", "--from", "{model}"],
        ["checkout", "a@1", "{out}"],
        ["diff", "a@1", "b@1"],
        ["store", "verify"],
        ["store", "stats"],
    ],
    ids=lambda args: " ".join(args[:2]),
)
def test_store_commands_import_no_heavy_library(tmp_path: Path, args: list[str]) -> None:
    from lineage.testing import write_tiny_weights

    model = write_tiny_weights(tmp_path / "m")
    root = tmp_path / "ws"
    env = {**os.environ, "PYTHONPATH": str(Path(lineage.__file__).parents[1])}
    lineage_cli = [sys.executable, "-m", "lineage.cli.main"]
    subprocess.run([*lineage_cli, "init", str(root), "--no-tracking"], check=True, env=env)
    subprocess.run([*lineage_cli, "add", "a", "--from", str(model)], cwd=root, check=True, env=env)
    if args[0] == "diff":
        subprocess.run(
            [*lineage_cli, "add", "b", "--from", str(model)], cwd=root, check=True, env=env
        )
    probe = textwrap.dedent(
        """
        import json, runpy, sys
        sys.argv = ["lineage", *json.loads(sys.argv[1])]
        try:
            runpy.run_module("lineage.cli.main", run_name="__main__")
        except SystemExit as exc:
            assert not exc.code, exc.code
        heavy = ("torch", "transformers", "mlflow", "prefect", "peft", "datasets")
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in heavy)))
        """
    )
    filled = [a.format(model=model, out=tmp_path / "out") for a in args]
    result = subprocess.run(
        [sys.executable, "-c", probe, json.dumps(filled)],
        cwd=root,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
