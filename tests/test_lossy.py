"""The lossy mode's test guard, end to end on tiny real BERTs and the shipped data.

`add/commit --lossy` keeps approximate weights only when every applicable test passes on
them within the tolerance; otherwise (or with no test at all) the version is stored
losslessly and checks out bit-exactly. Checkout and show say when weights are approximate.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from lineage.bundled import make_tiny_model
from lineage.errors import UsageError
from lineage.ops.add import add, commit
from lineage.ops.checkout import checkout
from lineage.ops.lossy import applicable_tests, lossy_request
from lineage.ops.tests import declare_model_test, disable_test, resolve_tests
from lineage.store import stats
from lineage.testing import run_cli, same_model_files
from lineage.workspace import Workspace

torch.set_num_threads(2)

ACC = {"threshold": 0.8, "dataset": "sentiment"}
UNCHANGED = {"ref": "lineage.testing:weights_unchanged_fraction", "threshold": 0.0}


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_cli(args, cwd, check=False)


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
    add(workspace, "base", source=base)
    declare_model_test(workspace, "base", "acc", "accuracy", ACC)
    yield workspace
    workspace.close()


def test_accepted_when_the_inherited_tests_pass(ws, models, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _, ft = models
    tests = applicable_tests(ws, "ft", [ws.resolve("base@1")])
    version = add(ws, "ft", source=ft, parents=["base@1"], kind="finetune", lossy=lossy_request())
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

    exact = add(ws, "ft-exact", source=ft, parents=["base@1"], kind="finetune")
    assert "lossy" not in exact.extra and not ws.manifest(exact.ref).approximate
    ids = {v.ref: v.manifest_id for v in (ws.resolve("base@1"), exact, version)}
    report = stats(ws.store, ids).versions  # each version counts only what it adds
    lossy_bytes, lossless_bytes = report[version.ref].stored_bytes, report[exact.ref].stored_bytes
    assert lossy_bytes * 4 < lossless_bytes, (lossy_bytes, lossless_bytes)

    out = checkout(ws, version.ref, tmp_path / "out")
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


def _zeroed(model: Path, out: Path) -> Path:
    """A copy of `model` whose weights are all zero: it predicts one class only."""
    import shutil

    from safetensors.numpy import load_file, save_file

    shutil.copytree(model, out)
    weights = load_file(str(model / "model.safetensors"))
    save_file({k: v * 0 for k, v in weights.items()}, str(out / "model.safetensors"))
    return out


def test_rejected_when_a_test_fails_on_the_approximate_copy(ws, models, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """commit: the model's own tests count. The new version is coded against its
    previous version, a dead model; with |error| <= 50 the approximate copy is that dead
    model again, which fails the model's accuracy test: stored lossless."""
    _, ft = models
    add(ws, "revived", source=_zeroed(ft, tmp_path / "dead"))
    declare_model_test(ws, "revived", "acc", "accuracy", ACC)
    version = commit(ws, "revived", source=ft, lossy=lossy_request(50.0))
    decision = version.extra["lossy"]
    assert not decision["accepted"]
    assert "'acc' fails on the approximate weights" in decision["reason"]
    [acc] = decision["tests"]
    assert acc["passed_exact"] and not acc["passed_approximate"]
    assert not ws.manifest(version.ref).approximate
    out = checkout(ws, version.ref, tmp_path / "out")
    assert same_model_files(out, ft)  # stored lossless: bit-exact


def test_rejected_when_a_metric_moves_beyond_the_tolerance(ws, models, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A user test that passes on both copies, but whose value moves: weights the
    fine-tune nudged by less than the bound are rounded back to the parent's."""
    base, ft = models
    add(ws, "line2", source=base)
    declare_model_test(ws, "line2", "unchanged", "user", UNCHANGED)
    version = add(ws, "line2-ft", source=ft, parents=["line2@1"], lossy=lossy_request())
    decision = version.extra["lossy"]
    [test] = decision["tests"]
    assert test["passed_exact"] and test["passed_approximate"]
    assert not test["within_tolerance"] and not decision["accepted"]
    assert "'unchanged' moved by more than 0.01" in decision["reason"]
    assert same_model_files(checkout(ws, version.ref, tmp_path / "out"), ft)
    # with a tolerance wide enough, the same request is accepted
    wide = add(ws, "line2-wide", source=ft, parents=["line2@1"], lossy=lossy_request(tolerance=1.0))
    assert wide.extra["lossy"]["accepted"] and ws.manifest(wide.ref).approximate


def test_no_applicable_test_means_lossless(ws, models, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _, ft = models
    orphan = add(ws, "orphan", source=ft, lossy=lossy_request())  # a new root: no tests yet
    decision = orphan.extra["lossy"]
    assert not decision["accepted"] and decision["tests"] == []
    assert "no test applies" in decision["reason"]
    assert not ws.manifest(orphan.ref).approximate
    assert same_model_files(checkout(ws, orphan.ref, tmp_path / "out"), ft)
    # an opt-out hides the inherited test from the guard, as from `lineage test`
    add(ws, "quiet", source=checkout(ws, "base@1", tmp_path / "b"), parents=["base@1"])
    disable_test(ws, "quiet", "acc")
    version = commit(ws, "quiet", source=ft, lossy=lossy_request())
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
        add(ws, "bad", source=ft, parents=["base@1"], lossy=lossy_request(tolerance=-0.5))
    assert [m.name for m in ws.models()] == models_before
    assert sorted(p.name for p in objects.rglob("*") if p.is_file()) == before
