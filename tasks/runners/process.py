"""The default runner: the step entrypoint in a subprocess on this machine.

No isolation beyond a separate process (the step's network policy is enforced by the
step itself, see `tasks.step.install_network_guard`), but no engine needed and no
container start-up cost. The step runs in its own session so a timeout kills it and
everything it started.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from tasks.runners.base import LogTail, Runner, StepResult, check_spec, read_outcome, spec_file
from tasks.runners.base import step_logger as default_logger
from tasks.runners.errors import OutOfMemoryError, StepTimeoutError

#: The folder holding the `tasks` package, so the subprocess imports this checkout's
#: step code even when the project is not installed in that interpreter.
_PROJECT_ROOT = Path(__file__).resolve().parents[2]

#: The same offline settings the task image bakes in, so both runners behave alike.
STEP_ENV = {
    "PYTHONUNBUFFERED": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


class ProcessRunner(Runner):
    """Run steps as `python -m tasks.step SPEC.json` subprocesses.

    Args:
        python: the interpreter to run (default: this one, so the same libraries).
        env: extra environment variables for the step.

    Example:
        >>> runner = ProcessRunner()
        >>> result = runner.run_step({"action": "probe", "out": "/tmp/o"})  # doctest: +SKIP
        >>> result.result["uid"]                                           # doctest: +SKIP
        0
    """

    name: ClassVar[str] = "process"

    def __init__(self, python: str | None = None, env: Mapping[str, str] | None = None) -> None:
        self.python = python or sys.executable
        self.env = dict(env or {})

    def _environment(self) -> dict[str, str]:
        env = {**os.environ, **STEP_ENV, **self.env}
        paths = [str(_PROJECT_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
        env["PYTHONPATH"] = os.pathsep.join(paths)
        return env

    def run_step(
        self,
        spec: Mapping[str, Any],
        *,
        timeout_s: float | None = None,
        logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
    ) -> StepResult:
        """Run the step in a subprocess; see `Runner.run_step`."""
        checked = check_spec(spec)
        tail = LogTail(logger or default_logger(), f"[{checked['action']}]")
        started = time.monotonic()
        with spec_file(checked) as path:
            proc = subprocess.Popen(
                [self.python, "-m", "tasks.step", str(path)],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._environment(),
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
                    f"{checked['action']} step timed out after {timeout_s:g} s and was killed"
                ) from None
            finally:
                if proc.poll() is None:  # interrupted (Ctrl-C): leave nothing behind
                    _kill_group(proc)
            reader.join(timeout=5)
            tail.close()
        if exit_code == -signal.SIGKILL:
            # Nobody here sent it: on Linux an unsolicited SIGKILL is the OOM killer.
            raise OutOfMemoryError(
                f"{checked['action']} step was killed by SIGKILL, most likely out of memory"
            )
        result = read_outcome(checked, exit_code, tail.lines, "in a subprocess")
        return StepResult(
            action=checked["action"],
            runner=self.name,
            out_dir=Path(checked["out"]),
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
