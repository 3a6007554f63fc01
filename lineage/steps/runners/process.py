"""The default runner: the step entry point in a subprocess on this machine.

No isolation beyond a separate process: the step runs with `python -P` (the current
directory is not on `sys.path`, so a stray `json.py` there runs nowhere), in its output
folder, with a minimal environment (no cloud keys: only `PASS_THROUGH` variables,
those named in `$LINEAGE_STEP_ENV`, and `PYTHONPATH` for user recipes), and under the
step's in-process network guard, which a recipe can bypass by starting a child process.
For real isolation of code you do not trust, use the docker runner. The step runs in
its own session so a timeout kills it and everything it started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

import lineage
from lineage.steps.runners.base import (
    LogTail,
    Runner,
    StepLogger,
    StepResult,
    check_spec,
    read_outcome,
    spec_file,
)
from lineage.steps.runners.errors import OutOfMemoryError, StepTimeoutError
from lineage.steps.spec import StepSpec

#: The folder holding the `lineage` package this process runs, so the step imports the
#: same code even when lineage is not installed in the interpreter (a source checkout).
_PACKAGE_PARENT = str(Path(lineage.__file__).resolve().parents[1])

#: The same offline settings the task image bakes in, so both runners behave alike.
STEP_ENV = {
    "PYTHONUNBUFFERED": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
}

#: Variables a step inherits from the caller: locale, time zone, temp folder and the
#: determinism knob. Nothing else (cloud credentials, tokens) reaches user recipes.
PASS_THROUGH = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "LINEAGE_DERIVE_THREADS")

#: Extra variable names to pass through, comma-separated (e.g. `CUDA_VISIBLE_DEVICES`).
PASS_THROUGH_ENV = "LINEAGE_STEP_ENV"


def step_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a process step runs with (see the module docstring)."""
    names = [*PASS_THROUGH, *filter(None, os.environ.get(PASS_THROUGH_ENV, "").split(","))]
    env = {name: os.environ[name] for name in names if name in os.environ}
    env.setdefault("PATH", os.defpath)
    env["HOME"] = os.environ.get("HOME", "/nonexistent")  # libraries look up caches under it
    env.update(STEP_ENV)
    # User recipes and tests (`module:function`) are found on the caller's PYTHONPATH.
    paths = [_PACKAGE_PARENT, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env.update(extra or {})
    return env


class ProcessRunner(Runner):
    """Run steps as `python -P -m lineage.steps SPEC.json` subprocesses.

    Args:
        python: the interpreter to run (default: this one, so the same libraries).
        env: extra environment variables for the step.
        threads: torch threads of a step whose spec names none (default: the
            determinism default).

    Example:
        >>> from lineage.steps.spec import ProbeSpec
        >>> result = ProcessRunner().run_step(ProbeSpec(out=str(tmp / "probe")))
        >>> result.result["out_writable"]
        True
    """

    name: ClassVar[str] = "process"

    def __init__(
        self,
        python: str | None = None,
        env: Mapping[str, str] | None = None,
        threads: int | None = None,
    ) -> None:
        self.python = python or sys.executable
        self.env = dict(env or {})
        self.threads = threads

    def run_step(
        self,
        spec: StepSpec,
        *,
        timeout_s: float | None = None,
        logger: StepLogger | None = None,
    ) -> StepResult:
        """Run the step in a subprocess; see `Runner.run_step`."""
        checked = check_spec(spec, self.threads)
        tail = LogTail.for_step(checked.action, logger)
        started = time.monotonic()
        with spec_file(checked) as path:
            proc = subprocess.Popen(
                [self.python, "-P", "-m", "lineage.steps", str(path)],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=checked.out,
                env=step_environment(self.env),
                start_new_session=True,  # its own process group: killable as a whole
                text=True,
                errors="replace",
            )
            reader = threading.Thread(target=_pump, args=(proc, tail), daemon=True)
            reader.start()
            try:
                exit_code = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                reader.join(timeout=5)
                tail.close()
                raise StepTimeoutError(
                    f"{checked.action} step timed out after {timeout_s:g} s and was killed"
                ) from None
            finally:
                if proc.poll() is None:  # interrupted (Ctrl-C): leave nothing behind
                    _kill_group(proc)
            reader.join(timeout=5)
            tail.close()
        if exit_code == -signal.SIGKILL:
            # Nobody here sent it: on Linux an unsolicited SIGKILL is the OOM killer.
            raise OutOfMemoryError(
                f"{checked.action} step was killed by SIGKILL, most likely out of memory"
            )
        result = read_outcome(checked, exit_code, tail.lines, "in a subprocess")
        return StepResult(
            action=checked.action,
            runner=self.name,
            out_dir=Path(checked.out),
            result=result,
            seconds=time.monotonic() - started,
            log_tail=list(tail.lines),
        )


def _pump(proc: subprocess.Popen[str], tail: LogTail) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        tail.feed(line)


def _kill_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
