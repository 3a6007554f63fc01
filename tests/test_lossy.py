"""The lossy mode's test guard, end to end on tiny real BERTs and the shipped data.

`add/commit --lossy` keeps approximate weights only when every applicable test passes on
them within the tolerance; otherwise (or with no test at all) the version is stored
losslessly and checks out bit-exactly. Checkout and show say when weights are approximate.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from lineage.api.lossy import applicable_tests
from lineage.api.testing import declare_model_test, disable_test, resolve_tests
from lineage.bundled import make_tiny_model
from lineage.errors import UsageError
from lineage.store import LossyOptions, stats
from lineage.workspace import Workspace

torch.set_num_threads(2)

LINEAGE = [sys.executable, "-m", "lineage.cli.main"]
ACC = {"threshold": 0.8, "dataset": "sentiment"}
UNCHANGED = {"ref": "lineage.testing:weights_unchanged_fraction", "threshold": 0.0}


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LINEAGE_AUTHOR": "tester"}
    env.pop("LINEAGE_WORKSPACE", None)
    return subprocess.run(
        [*LINEAGE, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=120
    )


def same_files(a: Path, b: Path) -> bool:
    names = sorted(p.name for p in a.iterdir())
    return names == sorted(p.name for p in b.iterdir()) and all(
        (a / n).read_bytes() == (b / n).read_bytes() for n in names
    )


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path]:
    """base: a tiny encoder fine-tuned on sentiment; ft: base tuned a little further,
    with weight decay, so every weight moves (as in a real fine-tune)."""
    from lineage.recipes import get_recipe

    tmp = tmp_path_factory.mktemp("lossy-models")
    encoder = make_tiny_model(tmp / "encoder")
    base, ft = tmp / "base", tmp / "ft"
    finetune = get_recipe("finetune")
    finetune.derive([encoder], {"steps": 40, "lr": 3e-3, "batch_size": 32}, "sentiment", base)
    params = {"steps": 10, "lr": 1e-3, "batch_size": 32, "seed": 1, "weight_decay": 0.01}
    finetune.derive([base], params, "sentiment", ft)
    return base, ft


@pytest.fixture(scope="module")
def ws(tmp_path_factory, models):  # type: ignore[no-untyped-def]
    """base@1 (lossless) with an accuracy test its descendants inherit."""
    base, _ = models
    workspace = Workspace.init(tmp_path_factory.mktemp("lossy-ws") / "ws")
    workspace.add("base", source=base)
    declare_model_test(workspace, "base", "acc", "accuracy", ACC)
    yield workspace
    workspace.close()


def test_accepted_when_the_inherited_tests_pass(ws, models, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _, ft = models
    tests = applicable_tests(ws, "ft", [ws.resolve("base@1")])
    version = ws.add("ft", source=ft, parents=["base@1"], kind="finetune", lossy=LossyOptions())
    # the guard saw exactly the tests the version now has
    assert [t.declaration.name for t in tests] == [
        t.declaration.name for t in resolve_tests(ws, version.ref)
    ]
    decision = version.extra["lossy"]
    assert decision["accepted"], decision["reason"]
    assert decision["max_abs_error"] == 1e-4 and decision["approximate_tensors"] >= 1
    [acc] = decision["tests"]
    assert acc["name"] == "acc" and acc["declared_on"] == "base"
    assert acc["passed_approximate"] and abs(acc["approximate"] - acc["exact"]) <= 0.01
    manifest = ws.manifest(version.ref)
    assert manifest.approximate

    exact = ws.add("ft-exact", source=ft, parents=["base@1"], kind="finetune")
    assert "lossy" not in exact.extra and not ws.manifest(exact.ref).approximate
    ids = {v.ref: v.manifest_id for v in (ws.resolve("base@1"), exact, version)}
    report = stats(ws.store, ids).versions  # each version counts only what it adds
    lossy_bytes, lossless_bytes = report[version.ref].stored_bytes, report[exact.ref].stored_bytes
    assert lossy_bytes * 4 < lossless_bytes, (lossy_bytes, lossless_bytes)

    out = ws.checkout(version.ref, tmp_path / "out")
    got, want = load_file(out / "model.safetensors"), load_file(ft / "model.safetensors")
    assert got.keys() == want.keys()
    worst = max(float(np.abs(got[k].astype(np.float64) - want[k]).max()) for k in want)
    assert 0 < worst <= 1e-4 * 1.001

    # the CLI says so: a warning on checkout (and in --json), and in show
    done = run(["checkout", version.ref, str(tmp_path / "cli-out"), "--json"], ws.root)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["approximate"] is True
    warnings = [line for line in done.stderr.splitlines() if "approximate" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: ft@1 was stored in lossy")
    shown = run(["show", version.ref, "--json"], ws.root)
    info = json.loads(shown.stdout)
    assert info["approximate"] is True and info["lossy"]["max_abs_error"] == 1e-4
    assert info["extra"]["lossy"]["accepted"] is True
    text = run(["show", version.ref], ws.root).stdout
    assert "approximate (stored in lossy mode" in text


def test_rejected_when_a_test_fails_on_the_approximate_copy(ws, models, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """commit: the model's own tests count; |error| <= 0.5 wipes a root model's weights."""
    _, ft = models
    version = ws.commit("base", source=ft, lossy=LossyOptions(max_abs_error=0.5))
    decision = version.extra["lossy"]
    assert not decision["accepted"]
    assert "'acc' fails on the approximate weights" in decision["reason"]
    [acc] = decision["tests"]
    assert acc["passed_exact"] and not acc["passed_approximate"]
    assert not ws.manifest(version.ref).approximate
    out = ws.checkout(version.ref, tmp_path / "out")
    assert same_files(out, ft)  # stored lossless: bit-exact


def test_rejected_when_a_metric_moves_beyond_the_tolerance(ws, models, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A user test that passes on both copies, but whose value moves: weights the
    fine-tune nudged by less than the bound are rounded back to the parent's."""
    base, ft = models
    ws.add("line2", source=base)
    declare_model_test(ws, "line2", "unchanged", "user", UNCHANGED)
    version = ws.add("line2-ft", source=ft, parents=["line2@1"], lossy=LossyOptions())
    decision = version.extra["lossy"]
    [test] = decision["tests"]
    assert test["passed_exact"] and test["passed_approximate"]
    assert not test["within_tolerance"] and not decision["accepted"]
    assert "'unchanged' moved by more than 0.01" in decision["reason"]
    assert same_files(ws.checkout(version.ref, tmp_path / "out"), ft)
    # with a tolerance wide enough, the same request is accepted
    wide = ws.add(
        "line2-wide", source=ft, parents=["line2@1"], lossy=LossyOptions(), lossy_tolerance=1.0
    )
    assert wide.extra["lossy"]["accepted"] and ws.manifest(wide.ref).approximate


def test_no_applicable_test_means_lossless(ws, models, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _, ft = models
    orphan = ws.add("orphan", source=ft, lossy=LossyOptions())  # a new root: no tests yet
    decision = orphan.extra["lossy"]
    assert not decision["accepted"] and decision["tests"] == []
    assert "no test applies" in decision["reason"]
    assert not ws.manifest(orphan.ref).approximate
    assert same_files(ws.checkout(orphan.ref, tmp_path / "out"), ft)
    # an opt-out hides the inherited test from the guard, as from `lineage test`
    ws.add("quiet", source=ws.checkout("base@1", tmp_path / "b"), parents=["base@1"])
    disable_test(ws, "quiet", "acc")
    version = ws.commit("quiet", source=ft, lossy=LossyOptions())
    assert version.extra["lossy"]["tests"] == [] and not ws.manifest(version.ref).approximate


def test_bad_lossy_input_is_one_line_and_stores_nothing(ws, models) -> None:  # type: ignore[no-untyped-def]
    _, ft = models
    objects = ws.root / ".lineage" / "objects"
    before = sorted(p.name for p in objects.rglob("*") if p.is_file())
    models_before = [m.name for m in ws.models()]
    for bad in ("0", "nan", "lots"):
        done = run(
            ["add", "bad", "--from", str(ft), "-p", "base@1", "--lossy", "--max-error", bad],
            ws.root,
        )
        assert done.returncode == 2, (bad, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and "max-error" in lines[0]
    done = run(["commit", "base", "--from", str(ft), "--max-error", "1e-3"], ws.root)
    assert done.returncode == 2 and "need --lossy" in done.stderr
    done = run(["commit", "base", "--from", str(ft), "--lossy", "--lossy-tolerance", "-1"], ws.root)
    assert done.returncode == 2 and "--lossy-tolerance" in done.stderr
    with pytest.raises(UsageError, match="lossy-tolerance"):
        ws.add("bad", source=ft, parents=["base@1"], lossy=LossyOptions(), lossy_tolerance=-0.5)
    assert [m.name for m in ws.models()] == models_before
    assert sorted(p.name for p in objects.rglob("*") if p.is_file()) == before
