"""Warm step workers as subprocesses: the process runner, without its start-up cost.

Each worker is `python -P -m lineage.steps --worker CONTROL` with the process
runner's environment (`step_environment`: no credentials, offline Hugging Face
settings, the network guard), its own session (a timeout kills it and everything it
started), its own temp folder (emptied after every step) and a lifeline: it exits when
the pipe on its stdin closes, so a host killed with SIGKILL leaves no worker behind.
Isolation is that of the process runner: a separate process, nothing more; so a worker
goes on after a step that ran user code, having forgotten that code's modules (the
next step imports them afresh), instead of retiring as a container does.

Where the platform allows (`can_fork`), a worker is forked from the pool's zygote
(`lineage.steps.zygote`, `Zygote` here) instead: the same loop, environment, session,
temp folder and lifeline, without importing torch & co. again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, ClassVar

from lineage.steps.pool.base import Worker, WorkerPool
from lineage.steps.pool.zygote import Zygote, can_fork
from lineage.steps.runners.process import step_environment
from lineage.steps.worker import USER_CODE_ENV

log = logging.getLogger("lineage.steps.pool")


class ProcessWorker(Worker):
    """One warm subprocess (see the module docstring): forked by the pool's zygote when
    it has one (ready at once), else started as `python -m lineage.steps --worker`."""

    where: ClassVar[str] = "in a warm subprocess"

    def __init__(
        self, cpu_share: int, python: str, env: Mapping[str, str], zygote: Zygote | None = None
    ) -> None:
        super().__init__(cpu_share)
        self.python = python
        self.env = dict(env)
        self.zygote = zygote
        self.root: Path | None = None
        self.proc: subprocess.Popen[str] | None = None
        # A forked worker is not our child: the zygote says how it ended, and a pidfd
        # says that it ended if the zygote is gone.
        self.pid: int | None = None
        self._pidfd: int | None = None
        self._code: int | None = None
        self._lifeline: int | None = None  # our end of a forked worker's stdin pipe
        self._forked = threading.Event()  # answered: forked, or started as a subprocess

    def launch(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="lineage-worker-"))
        self.control = self.root / "control"
        self.control.mkdir()
        (self.root / "tmp").mkdir()
        if self.zygote is None or not self._ask_zygote(self.zygote):
            self._spawn()

    def _ask_zygote(self, zygote: Zygote) -> bool:
        assert self.root is not None and self.control is not None
        lifeline_read, lifeline_write = os.pipe()
        output_read, output_write = os.pipe()
        try:
            asked = zygote.fork(
                self, self.control, self.root / "tmp", self.root, [lifeline_read, output_write]
            )
        finally:
            os.close(lifeline_read)  # the zygote has its own copies now
            os.close(output_write)
        if not asked:
            os.close(lifeline_write)
            os.close(output_read)
            return False
        self._lifeline = lifeline_write
        output = os.fdopen(output_read, "r", errors="replace")
        threading.Thread(
            target=self._pump, args=(output,), name="worker-output", daemon=True
        ).start()
        return True

    def _spawn(self) -> None:
        assert self.root is not None and self.control is not None
        self.proc = subprocess.Popen(
            [self.python, "-P", "-m", "lineage.steps", "--worker", str(self.control)],
            stdin=subprocess.PIPE,  # the lifeline: never written, closed by stop()
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=self.root,
            env=worker_environment(self.env, self.cpu_share, self.root / "tmp"),
            start_new_session=True,
            text=True,
            errors="replace",
        )
        self.pid = self.proc.pid
        self._forked.set()
        assert self.proc.stdout is not None
        threading.Thread(
            target=self._pump, args=(self.proc.stdout,), name="worker-output", daemon=True
        ).start()

    def _pump(self, output: IO[str]) -> None:
        with output:
            for line in output:
                self.feed(line)

    # ------------------------------------------------------------------ the zygote's reports

    def forked(self, pid: int) -> None:
        self.pid = pid
        with contextlib.suppress(OSError):  # already gone: its exit report follows
            self._pidfd = os.pidfd_open(pid)
        self._forked.set()

    def refused(self, reason: str) -> None:
        log.debug("worker not forked (%s): starting a subprocess", reason)
        if self._lifeline is not None:
            os.close(self._lifeline)
            self._lifeline = None
        try:
            if not self._killed:
                self._spawn()
                return
        except OSError as exc:  # seen by the pool as a worker that exited while starting
            self._between_steps.append(f"cannot start a worker: {exc}")
        self._code = -1
        self._forked.set()

    def exited(self, code: int) -> None:
        self._code = code

    # ------------------------------------------------------------------ Worker

    def exit_code(self) -> int | None:
        if self.proc is not None:
            return self.proc.poll()
        if self._code is not None or (self.zygote is not None and self.zygote.alive):
            return self._code
        # The zygote is gone, so no report will come: whether it ended, not how.
        if self._pidfd is None:
            return -1 if self._forked.is_set() else None
        ended, _, _ = select.select([self._pidfd], [], [], 0)
        return -1 if ended else None

    def out_of_memory(self) -> bool:
        # Nobody here sent it: on Linux an unsolicited SIGKILL is the OOM killer.
        return not self._killed and self.exit_code() == -signal.SIGKILL

    def _wait(self, timeout_s: float) -> bool:
        """Wait for the worker to end; whether it did."""
        deadline = time.monotonic() + timeout_s
        while self.exit_code() is None:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def kill(self) -> None:
        self._killed = True
        if self.proc is not None:
            if self.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            return
        if self._lifeline is not None and self.pid is None:
            # Not forked yet: without a lifeline it exits as soon as it is.
            os.close(self._lifeline)
            self._lifeline = None
            self._forked.wait(timeout=5)
        if self.pid is not None and self.exit_code() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self._wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()  # the lifeline: the worker exits at once
        elif self._lifeline is not None:
            os.close(self._lifeline)
            self._lifeline = None
        if self.proc is not None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()
        elif self.pid is not None and not self._wait(5):
            self.kill()
        # Whatever the step started in the worker's session goes too.
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)


def worker_environment(env: Mapping[str, str], threads: int, tmp: Path) -> dict[str, str]:
    """A worker's environment: the process runner's (`step_environment`), its temp
    folder, and thread pools sized to its slot's share of the cores."""
    return step_environment(
        {
            **env,
            "TMPDIR": str(tmp),
            "LINEAGE_WORKER_LIFELINE": "1",
            USER_CODE_ENV: "reload",
            # Libraries that size their own pools from the cores: the slot's share.
            "OMP_NUM_THREADS": str(threads),
            "MKL_NUM_THREADS": str(threads),
        }
    )


class ProcessPool(WorkerPool):
    """The process runner with warm workers: `slots` subprocesses, one step at a time each.

    Where the platform allows (`can_fork`: Linux), the workers are forked from one
    zygote process that imported torch & co. once, so every slot's worker, and every
    replacement, is ready as soon as the zygote is (`fork=False`: each worker imports
    for itself).

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
        fork: bool = True,
    ) -> None:
        self.python = python or sys.executable
        self.env = dict(env or {})
        self._fork = fork and can_fork()
        self._zygote: Zygote | None = None
        self._zygote_lock = threading.Lock()
        super().__init__(slots, threads=threads, prestart=prestart)

    def imports_once(self) -> bool:
        return self._fork

    def zygote(self) -> Zygote | None:
        """The zygote (started on first use), or None where workers are not forked."""
        if not self._fork:
            return None
        with self._zygote_lock:
            if self._zygote is None:
                env = worker_environment(self.env, self.cpu_share, Path(tempfile.gettempdir()))
                self._zygote = Zygote(self.python, env)
            return self._zygote

    def new_worker(self) -> Worker:
        return ProcessWorker(self.cpu_share, self.python, self.env, self.zygote())

    def close(self) -> None:
        super().close()
        with self._zygote_lock:
            zygote, self._zygote, self._fork = self._zygote, None, False
        if zygote is not None:
            zygote.stop()
