"""The process runner and the step entrypoint, without any engine."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lineage.errors import RunnerError
from lineage.steps.runners import ProcessRunner, get_runner
from lineage.steps.runners.errors import NetworkAccessError, StepFailedError, StepTimeoutError
from lineage.steps.spec import ERROR_FILE, RESULT_FILE, StepExit, parse_spec


def test_probe_reports_from_inside(tmp_path: Path) -> None:
    result = ProcessRunner().run_step(parse_spec({"action": "probe", "out": str(tmp_path / "o")}))
    assert result.runner == "process" and result.action == "probe"
    assert result.result["environment"]["in_container"] is False
    assert result.image_digest is None
    assert (tmp_path / "o" / RESULT_FILE).is_file()


def test_hang_is_killed_at_the_timeout(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(StepTimeoutError, match="timed out after 2 s"):
        ProcessRunner().run_step(
            parse_spec({"action": "probe", "out": str(tmp_path / "o"), "sleep_s": 600}), timeout_s=2
        )
    assert time.monotonic() - started < 20


def test_network_attempt_is_refused_and_named(tmp_path: Path) -> None:
    # 192.0.2.1 is TEST-NET-1: never routed, so nothing is actually contacted.
    with pytest.raises(NetworkAccessError, match=r"192\.0\.2\.1:443"):
        ProcessRunner().run_step(
            parse_spec(
                {
                    "action": "probe",
                    "out": str(tmp_path / "o"),
                    "connect": "192.0.2.1:443",
                    "guard": True,
                }
            ),
            timeout_s=60,
        )
    error = json.loads((tmp_path / "o" / ERROR_FILE).read_text())
    assert error["exit_code"] == StepExit.NETWORK


def test_unknown_recipe_is_a_recipe_error(tmp_path: Path) -> None:
    parent = tmp_path / "parent"
    parent.mkdir()
    with pytest.raises(StepFailedError, match="unknown recipe 'nope'") as info:
        ProcessRunner().run_step(
            parse_spec(
                {
                    "action": "derive",
                    "recipe": "nope",
                    "params": {},
                    "parents": [str(parent)],
                    "out": str(tmp_path / "o"),
                }
            ),
            timeout_s=120,
        )
    assert info.value.error_type == "RecipeError"


def test_missing_input_is_refused_before_running(tmp_path: Path) -> None:
    with pytest.raises(RunnerError, match="does not exist"):
        ProcessRunner().run_step(
            parse_spec(
                {
                    "action": "derive",
                    "recipe": "finetune",
                    "parents": [str(tmp_path / "missing")],
                    "out": str(tmp_path / "o"),
                }
            )
        )


def test_bad_spec_exit_code(tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"action": "derive", "out": str(tmp_path / "o")}))
    done = subprocess.run(
        [sys.executable, "-P", "-m", "lineage.steps", str(spec)], capture_output=True, text=True
    )
    assert done.returncode == StepExit.BAD_SPEC
    assert "derive spec needs 'recipe'" in done.stderr


def test_unknown_runner() -> None:
    with pytest.raises(RunnerError, match="unknown runner 'k8s'"):
        get_runner("k8s")
