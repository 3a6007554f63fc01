"""Item 15 and the result file of item 2: a process step does not run code from the
caller's directory, sees no secrets, and the host never follows a step's links."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lineage.steps.runners import ProcessRunner
from lineage.steps.runners.base import read_step_json
from lineage.steps.spec import ProbeSpec


def test_process_step_ignores_the_cwd_and_gets_a_minimal_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trap = tmp_path / "cwd"
    trap.mkdir()
    mark = tmp_path / "ran"
    # A json.py where the caller stands would shadow the standard library's.
    (trap / "json.py").write_text(f"open({str(mark)!r}, 'w').write('ran')\n")
    monkeypatch.chdir(trap)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-leak")
    monkeypatch.setenv("LINEAGE_STEP_ENV", "ALLOWED_ONE")
    monkeypatch.setenv("ALLOWED_ONE", "yes")
    result = ProcessRunner().run_step(ProbeSpec(out=str(tmp_path / "out")))
    assert not mark.exists()
    names = result.result["environment_names"]
    assert "AWS_SECRET_ACCESS_KEY" not in names and "ALLOWED_ONE" in names


def test_result_files_are_never_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"stolen": True}))
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(secret, out / "result.json")
    assert read_step_json(out / "result.json") is None
    os.mkfifo(out / "error.json")  # a FIFO would hang a naive reader
    assert read_step_json(out / "error.json") is None
