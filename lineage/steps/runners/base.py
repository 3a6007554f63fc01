"""What every runner shares: the `Runner` interface, `StepResult`, and reading a step's end.

A runner takes a typed step spec whose paths are the host's (parents, data, out), runs
the step entry point somewhere (this process, a subprocess, a container), streams its
output to a logger, and turns the way it ended into a `StepResult` or one specific
`RunnerError`.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import signal
import stat
import sys
import tempfile
import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, TypeAlias

from lineage.steps.runners.errors import NetworkAccessError, RunnerError, StepFailedError
from lineage.steps.spec import (
    ERROR_FILE,
    MODEL_DIR,
    RESULT_FILE,
    DeriveSpec,
    StepExit,
    StepSpec,
    TestSpec,
)

#: Lines of step output kept for error messages and `StepResult.log_tail`.
LOG_TAIL_LINES = 40

#: Where a step's output lines go: a logger, or Prefect's run logger (an adapter).
StepLogger: TypeAlias = logging.Logger | logging.LoggerAdapter[Any]


@dataclass
class StepResult:
    """How a step ended, and what it wrote.

    Attributes:
        action: derive, test or probe.
        runner: "inline", "process" or "docker".
        out_dir: the output folder on the host.
        result: the step's `result.json` (metrics, loss curve, file digests...).
        seconds: wall time of the whole run, runner overhead included.
        image: the image the step ran in (docker runner), as given.
        image_digest: the image's content digest: provenance for the new version.
        log_tail: the last lines the step printed.
    """

    action: str
    runner: str
    out_dir: Path
    result: dict[str, Any]
    seconds: float
    image: str | None = None
    image_digest: str | None = None
    log_tail: list[str] = field(default_factory=list)

    @property
    def model_dir(self) -> Path | None:
        """The derived model (a Hugging Face directory), for derive steps."""
        path = self.out_dir / MODEL_DIR
        return path if path.is_dir() else None

    @property
    def metrics(self) -> dict[str, float]:
        return dict(self.result.get("metrics") or {})

    @property
    def loss_curve(self) -> list[tuple[int, float]]:
        return [(int(s), float(v)) for s, v in self.result.get("loss_curve") or []]


def step_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The Prefect task/flow run logger when inside a run, else a plain logger.

    Prefect is only consulted when already imported: a plain `lineage` command must not
    pay Prefect's import time just to run a step.
    """
    if "prefect" in sys.modules:
        try:
            from prefect.exceptions import MissingContextError
            from prefect.logging import get_run_logger

            try:
                return get_run_logger()
            except MissingContextError:
                pass
        except ImportError:  # pragma: no cover - a broken prefect install
            pass
    return logging.getLogger("lineage.steps")


class LogTail:
    """Forward step output line by line to a logger, keeping the last lines.

    Output is read by another thread (a pipe or log-stream reader) than the one that
    runs the step; the lines are logged in the context of the thread that made the
    tail, so a Prefect task run's logger sends them to that run's API, not to a
    server of the reader thread's own."""

    def __init__(self, logger: StepLogger, prefix: str) -> None:
        self.logger = logger
        self.prefix = prefix
        self.lines: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        self._partial = ""
        self._context = contextvars.copy_context()
        self._lock = threading.Lock()  # a context is entered by one thread at a time

    @classmethod
    def for_step(cls, action: str, logger: StepLogger | None = None) -> LogTail:
        """The tail of one step's output: lines prefixed `[action]`, sent to `logger`
        (default: `step_logger()`)."""
        return cls(logger or step_logger(), f"[{action}]")

    def feed(self, chunk: str) -> None:
        """Take any piece of output; emit the complete lines in it."""
        text = self._partial + chunk
        *lines, self._partial = text.split("\n")
        for line in lines:
            self._emit(line)

    def close(self) -> None:
        if self._partial:
            self._emit(self._partial)
            self._partial = ""

    def _emit(self, line: str) -> None:
        line = line.rstrip("\r")
        if line:
            self.lines.append(line)
            with self._lock:
                self._context.run(self.logger.info, "%s %s", self.prefix, line)


def check_spec(spec: StepSpec, threads: int | None = None) -> StepSpec:
    """Host-side checks before anything runs: inputs exist, the output folder is usable.

    Returns the spec with an absolute output folder (created if missing), and with
    `threads` as its thread count unless it names one itself.

    Raises:
        RunnerError: an input path that does not exist, or an output folder in use.
    """
    for path in spec.inputs():
        if not Path(path).exists():
            raise RunnerError(f"step input {path} does not exist")
    out = Path(spec.out).absolute()
    if out.is_symlink():
        raise RunnerError(f"output folder {out} is a symbolic link")
    if out.exists() and any(out.iterdir()):
        # A leftover result.json from an earlier try would read as this run's result.
        raise RunnerError(f"output folder {out} is not empty")
    out.mkdir(parents=True, exist_ok=True)
    if threads is not None and isinstance(spec, DeriveSpec | TestSpec) and spec.threads is None:
        return replace(spec, out=str(out), threads=threads)
    return replace(spec, out=str(out))


@contextmanager
def spec_file(spec: StepSpec) -> Iterator[Path]:
    """The spec written to a private temp folder (readable by the container's user)."""
    with tempfile.TemporaryDirectory(prefix="lineage-spec-") as tmp:
        folder = Path(tmp)
        path = folder / "spec.json"
        path.write_text(json.dumps(spec.to_json(), indent=1, default=str))
        folder.chmod(0o755)
        path.chmod(0o644)
        yield path


def read_step_json(path: Path) -> dict[str, Any] | None:
    """A JSON object a step wrote, or None. Never follows a symbolic link: the step is
    not trusted to point the host at files outside its output folder."""
    try:
        # O_NONBLOCK: opening a FIFO the step left there must not wait for a writer.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                return None  # a FIFO or device would hang or flood the host
            raw = handle.read(MAX_RESULT_BYTES + 1)
        if len(raw) > MAX_RESULT_BYTES:
            return None
        value = json.loads(raw)
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


#: A step's result.json holds metrics and digests: anything bigger is not one.
MAX_RESULT_BYTES = 64 << 20


def read_outcome(
    spec: StepSpec, exit_code: int, log_tail: Iterable[str], where: str
) -> dict[str, Any]:
    """Turn a finished step's exit code and files into its result, or raise.

    Signals and resource kills are the caller's to diagnose first (only it knows about
    timeouts and cgroup OOM flags); this handles the step's own ways of ending.

    Raises:
        NetworkAccessError: the step tried to connect out.
        StepFailedError: any other non-zero exit, or a success without a result.
    """
    out = Path(spec.out)
    action = spec.action
    tail = list(log_tail)
    if exit_code == StepExit.OK:
        result = read_step_json(out / RESULT_FILE)
        if result is None:
            raise StepFailedError(
                f"{action} step {where} exited 0 but wrote no readable {RESULT_FILE}", 0, None
            )
        return result
    error = read_step_json(out / ERROR_FILE) or {}
    kind, message = error.get("type"), error.get("message")
    if exit_code == StepExit.NETWORK:
        raise NetworkAccessError(f"{action} step {where}: {message or 'tried the network'}")
    if exit_code < 0 or exit_code > 128:
        number = -exit_code if exit_code < 0 else exit_code - 128
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        last = tail[-1] if tail else "no output"
        raise StepFailedError(
            f"{action} step {where} was killed by {name} ({last})", exit_code, None
        )
    if not message:
        message = tail[-1] if tail else "no output"
    label = f"{kind}: " if kind else ""
    raise StepFailedError(
        f"{action} step {where} failed (exit {exit_code}): {label}{message}", exit_code, kind
    )


class Runner(ABC):
    """Runs one step spec somewhere and reports how it went.

    Subclasses set `name` and implement `run_step`. Paths in the spec are host paths;
    a runner that moves the step elsewhere (a container) maps them itself.
    """

    name: ClassVar[str]

    @abstractmethod
    def run_step(
        self,
        spec: StepSpec,
        *,
        timeout_s: float | None = None,
        logger: StepLogger | None = None,
    ) -> StepResult:
        """Run the step; return its result or raise a `RunnerError` subclass.

        Args:
            spec: the step spec (see `lineage.steps.spec`), with host paths.
            timeout_s: kill the step after this many seconds (`StepTimeoutError`).
            logger: where the step's output lines go; default: the Prefect run logger
                inside a Prefect run, else `lineage.steps`.
        """
