"""The CLI over promotion: `promote`, `rollback --cascade --json`, `sync mlflow`,
and `log --aliases` showing which version served when."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from lineage.errors import PromotionError
from lineage.ops.add import add, commit
from lineage.workspace import Workspace

from .conftest import record_results

LINEAGE = [sys.executable, "-m", "lineage.cli.main"]


def run(args: list[str], root: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The real console script in a subprocess: exit codes and stderr lines."""
    env = {**os.environ, "LINEAGE_AUTHOR": "cli-tester", "LINEAGE_WORKSPACE": str(root)}
    env.pop("MLFLOW_TRACKING_URI", None)
    result = subprocess.run([*LINEAGE, *args], capture_output=True, text=True, env=env, timeout=180)
    if check and result.returncode != 0:
        raise AssertionError(f"lineage {args} failed: {result.stderr}")
    return result


def invoke(args: list[str], root: Path) -> str:
    """The same app in-process (a subprocess costs seconds of imports each)."""
    from typer.testing import CliRunner

    from lineage.cli.main import app

    result = CliRunner().invoke(
        app, ["--workspace", str(root), *args], env={"LINEAGE_AUTHOR": "cli-tester"}
    )
    if result.exit_code != 0:
        raise AssertionError(f"lineage {args} failed: {result.output} {result.exception!r}")
    return result.stdout


def test_promote_rollback_sync_from_the_cli(tmp_path: Path, tiny_weights: Any) -> None:
    ws = Workspace.init(tmp_path / "ws")
    add(ws, "base", source=tiny_weights(0))
    add(ws, "ft", source=tiny_weights(1), parents=["base@1"], kind="finetune")
    commit(ws, "base", source=tiny_weights(2))
    commit(ws, "ft", source=tiny_weights(3), parents=["base@2"])
    for ref in ("base@1", "ft@1", "base@2", "ft@2"):
        record_results(ws, ref)
    record_results(ws, "base@2", passed=False, names=("robustness",))
    root = ws.root

    refused = run(["promote", "base@2"], root, check=False)
    assert refused.returncode == PromotionError.exit_code
    assert refused.stderr.startswith("error: cannot promote base@2: base@2 failed 1 test")
    # Fixed and re-tested; robustness is declared on base, so every version (and ft,
    # which inherits it) needs a result before it can serve.
    for ref in ("base@1", "ft@1", "base@2", "ft@2"):
        record_results(ws, ref, names=("robustness",))

    for ref in ("base@1", "ft@1", "base@2", "ft@2"):
        invoke(["promote", ref, "--reason", "release"], root)
    out = json.loads(invoke(["rollback", "base", "--cascade", "--reason", "bad", "--json"], root))
    assert out["from_version"] == 2 and out["to_version"] == 1
    assert out["cascaded"] == {"ft": {"from_version": 2, "to_version": 1}}
    assert out["mlflow_aliases"]["ft"] == {"champion": "1"}

    missing = run(["rollback", "ft", "--to", "7"], root, check=False)
    assert missing.returncode == PromotionError.exit_code
    assert missing.stderr.strip() == "error: cannot roll back ft to version 7: no such version"

    history = json.loads(invoke(["log", "ft", "--aliases", "--json"], root))
    champion = [
        (e["from_version"], e["to_version"], e["action"])
        for e in history
        if e["alias"] == "champion"
    ]
    assert champion == [(None, 1, "promote"), (1, 2, "promote"), (2, 1, "rollback")]
    assert history[-1]["actor"] == "cli-tester"

    # Promotion registered the versions; sync adds the test runs nobody recorded yet.
    sync = json.loads(invoke(["sync", "mlflow", "--json"], root))
    assert sorted(sync["models"]) == ["base", "ft"] and sync["registered"] == []
    assert sorted(sync["test_runs"]) == ["base@1", "base@2", "ft@1", "ft@2"]
    assert json.loads(invoke(["sync", "mlflow", "--json"], root))["changed"] is False
