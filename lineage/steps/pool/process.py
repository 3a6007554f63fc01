"""Warm step workers as subprocesses: the process runner, without its start-up cost.

Each worker is `python -P -m lineage.steps --worker CONTROL` with the process
runner's environment (`step_environment`: no credentials, offline Hugging Face
settings, the network guard), its own session (a timeout kills it and everything it
started), its own temp folder (emptied after every step) and a lifeline: it exits when
the pipe on its stdin closes, so a host killed with SIGKILL leaves no worker behind.
Isolation is that of the process runner: a separate process, nothing more; so a worker
goes on after a step that ran user code, having forgotten that code's modules (the
next step imports them afresh), instead of retiring as a container does.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from lineage.steps.pool.base import Worker, WorkerPool
from lineage.steps.runners.process import step_environment
from lineage.steps.worker import USER_CODE_ENV


class ProcessWorker(Worker):
    """One warm subprocess (see the module docstring)."""

    where: ClassVar[str] = "in a warm subprocess"

    def __init__(self, cpu_share: int, python: str, env: Mapping[str, str]) -> None:
        super().__init__(cpu_share)
        self.python = python
        self.env = dict(env)
        self.root: Path | None = None
        self.proc: subprocess.Popen[str] | None = None

    def launch(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="lineage-worker-"))
        self.control = self.root / "control"
        tmp = self.root / "tmp"
        self.control.mkdir()
        tmp.mkdir()
        threads = str(self.cpu_share)
        env = step_environment(
            {
                **self.env,
                "TMPDIR": str(tmp),
                "LINEAGE_WORKER_LIFELINE": "1",
                USER_CODE_ENV: "reload",
                # Libraries that size their own pools from the cores: the slot's share.
                "OMP_NUM_THREADS": threads,
                "MKL_NUM_THREADS": threads,
            }
        )
        self.proc = subprocess.Popen(
            [self.python, "-P", "-m", "lineage.steps", "--worker", str(self.control)],
            stdin=subprocess.PIPE,  # the lifeline: never written, closed by stop()
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=self.root,
            env=env,
            start_new_session=True,
            text=True,
            errors="replace",
        )
        threading.Thread(target=self._pump, name="worker-output", daemon=True).start()

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.feed(line)

    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def out_of_memory(self) -> bool:
        # Nobody here sent it: on Linux an unsolicited SIGKILL is the OOM killer.
        return not self._killed and self.exit_code() == -signal.SIGKILL

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.stdin is not None:
                with contextlib.suppress(OSError):
                    self.proc.stdin.close()  # the lifeline: the worker exits at once
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()
            # Whatever the step started in the worker's session goes too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)


class ProcessPool(WorkerPool):
    """The process runner with warm workers: `slots` subprocesses, one step at a time each.

    Args:
        slots: steps at once. threads: torch threads per step (default: see
            `step_threads`). python: the interpreter. env: extra environment variables.

    Example:
        >>> from lineage.steps.spec import ProbeSpec
        >>> with ProcessPool(slots=1) as pool:
        ...     first = pool.run_step(ProbeSpec(out=str(tmp / "a")))
        ...     second = pool.run_step(ProbeSpec(out=str(tmp / "b")))
        >>> first.runner, first.result["pid"] == second.result["pid"]  # one warm process
        ('process', True)
    """

    name: ClassVar[str] = "process"

    def __init__(
        self,
        slots: int = 1,
        *,
        threads: int | None = None,
        python: str | None = None,
        env: Mapping[str, str] | None = None,
        prestart: bool = True,
    ) -> None:
        self.python = python or sys.executable
        self.env = dict(env or {})
        super().__init__(slots, threads=threads, prestart=prestart)

    def new_worker(self) -> Worker:
        return ProcessWorker(self.cpu_share, self.python, self.env)
