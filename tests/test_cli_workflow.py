"""The CLI end to end on tiny real transformers: recipes, tests, bisect, store, diff.

Each command runs as a real `lineage` process; bad input must give one `error:` line,
the documented exit code, and leave the workspace unchanged.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from lineage.bundled import make_tiny_model
from lineage.testing import run_cli


def run(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run_cli(args, cwd, check=check)


def as_json(args: list[str], cwd: Path):  # type: ignore[no-untyped-def]
    return json.loads(run([*args, "--json"], cwd).stdout)


@pytest.fixture(scope="module")
def family(tmp_path_factory):  # type: ignore[no-untyped-def]
    """base (tiny BERT classifier) -> half (fp16 cast) and pruned (99% sparse)."""
    tmp = tmp_path_factory.mktemp("cli-workflow")
    root = tmp / "ws"
    run(["init", str(root), "--no-tracking"], tmp)
    base = make_tiny_model(tmp / "base", num_labels=2, seed=0)
    run(["add", "base", "--from", str(base), "--tag", "upstream"], root)
    run(["add", "half", "-p", "base@1", "--recipe", "quantize", "--param", "dtype=float16"], root)
    run(["add", "pruned", "-p", "base@1", "--recipe", "prune", "--param", "sparsity=0.99"], root)
    return root, tmp


def test_recipe_versions_record_provenance(family) -> None:  # type: ignore[no-untyped-def]
    root, _ = family
    half = as_json(["show", "half@1"], root)
    assert half["recipe_id"] == "quantize" and half["kind"] == "quantize"
    assert half["recipe_params"]["dtype"] == "float16"
    assert half["code_version"].startswith("lineage==")
    assert [p["ref"] for p in half["parents"]] == ["base@1"]
    assert [v["ref"] for v in as_json(["search", "--tag", "upstream"], root)] == ["base@1"]
    assert {r["id"] for r in as_json(["recipes", "list"], root)} >= {
        "finetune",
        "lora",
        "distill",
        "quantize",
        "prune",
        "merge",
    }


def test_tests_inherit_run_and_bisect(family) -> None:  # type: ignore[no-untyped-def]
    root, _ = family
    run(
        ["tests", "declare", "base", "small", "--kind", "size", "--param", "max_params=100000000"],
        root,
    )
    run(
        [
            "tests",
            "declare",
            "base",
            "same-as-parent",
            "--kind",
            "user",
            "--param",
            "ref=lineage.testing:weights_unchanged_fraction",
            "--param",
            "threshold=0.99",
        ],
        root,
    )
    listed = as_json(["show", "pruned@1"], root)["tests"]
    assert {t["name"] for t in listed} == {"small", "same-as-parent"}
    assert all(t["declared_on"] == "base" for t in listed)
    # The pruned child changes a few % of the weights (encoder matrices): exit 12.
    result = run(["test", "pruned@1"], root, check=False)
    assert result.returncode == 12, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: pruned@1 failed 1 test")
    assert run(["test", "half@1", "--only", "small"], root).returncode == 0
    stored = as_json(["show", "pruned@1"], root)["tests"]
    assert {t["name"]: t["latest"]["passed"] for t in stored} == {
        "small": True,
        "same-as-parent": False,
    }
    # Several refs in one call: each is tested; the failing ones are named in one line.
    both = run(["test", "base@1", "pruned@1"], root, check=False)
    assert both.returncode == 12
    assert both.stderr.strip().splitlines() == ["error: pruned@1 failed 1 test(s): same-as-parent"]
    # Gated promotion of several refs: the passing one moves, the failing one is refused.
    promoted = run(["promote", "base@1", "pruned@1"], root, check=False)
    assert promoted.returncode == 13
    assert promoted.stderr.strip().startswith("error: 1 of 2 refused: pruned@1")
    assert as_json(["models"], root)[0]["aliases"] == {"champion": 1}
    found = as_json(["bisect", "same-as-parent", "pruned@1"], root)
    assert found["first_failing"] == "pruned@1"
    # A descendant can opt out of an inherited test.
    run(["tests", "disable", "pruned", "same-as-parent"], root)
    assert run(["test", "pruned@1"], root).returncode == 0


def test_diff_and_store_commands(family) -> None:  # type: ignore[no-untyped-def]
    root, _ = family
    diff = as_json(["diff", "base@1", "pruned@1"], root)
    assert diff["changed"] and not diff["added"] and not diff["removed"]
    assert all(c["relative_l2"] is None or c["relative_l2"] > 0 for c in diff["changed"])
    stats = as_json(["store", "stats"], root)
    assert set(stats["versions"]) == {"base@1", "half@1", "pruned@1"}
    assert stats["total"]["stored_bytes"] < stats["total"]["logical_bytes"]
    assert as_json(["store", "verify"], root)["ok"] is True
    gc = as_json(["store", "gc", "--dry-run"], root)
    assert gc["removed_objects"] == []


def test_parent_auto_finds_the_family(family) -> None:  # type: ignore[no-untyped-def]
    root, tmp = family
    out = tmp / "checked-out"
    run(["checkout", "pruned@1", str(out)], root)
    added = as_json(["add", "copy", "--from", str(out), "--parent", "auto"], root)
    assert [p["ref"] for p in added["parents"]] in (["pruned@1"], ["base@1"])
    # Without --parent, add names the likely parent but records none.
    orphan = as_json(["add", "orphan", "--from", str(out)], root)
    assert orphan["parents"] == []
    assert orphan["suggested_parents"][0]["similarity"] > 0.9


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["add", "x", "-p", "base@1", "--recipe", "nope"], 9, "unknown recipe"),
        (["add", "x", "-p", "base@1", "--recipe", "prune", "--param", "sparsity=2"], 9, "sparsity"),
        (
            ["add", "x", "-p", "base@1", "--recipe", "finetune", "--data", "/no/such.csv"],
            10,
            "/no/such.csv",
        ),
        (
            ["tests", "declare", "base", "acc", "--kind", "accuracy", "--param", "threshold=high"],
            11,
            "threshold",
        ),
        (["tests", "declare", "base", "acc", "--kind", "vibes"], 11, "vibes"),
        (["derive", "base@1", "--on", "half@1"], 9, "not made by a recipe"),
        (["add", "x", "--from", "."], 7, "no weights"),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(family, args, code, needle) -> None:  # type: ignore[no-untyped-def]
    root, _ = family
    before = _snapshot(root)
    result = run(args, root, check=False)
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], lines
    assert _snapshot(root) == before


def _snapshot(root: Path) -> tuple[list[str], int, set[str]]:
    """Versions, declared tests and stored objects: what bad input must not change."""
    from sqlalchemy import func, select

    from lineage.graph import schema as t
    from lineage.workspace import Workspace

    ws = Workspace.open(root)
    try:
        refs = [v.ref for v in ws.search()]
        with ws.graph.engine.connect() as conn:
            tests = conn.execute(select(func.count()).select_from(t.model_tests)).scalar_one()
        objects = {p.name for p in (root / ".lineage" / "objects").rglob("*") if p.is_file()}
        return refs, int(tests), objects
    finally:
        ws.close()
