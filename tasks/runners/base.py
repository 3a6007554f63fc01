"""What every runner shares: the `Runner` interface, `StepResult`, and reading a step's end.

A runner takes a step spec whose paths are the host's (parents, data, out), runs
`python -m tasks.step` somewhere (a subprocess, a container), streams its output to a
logger, and turns the way it ended into a `StepResult` or one specific `RunnerError`.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import tempfile
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from tasks.runners.errors import NetworkAccessError, RunnerError, StepFailedError
from tasks.step import ERROR_FILE, MODEL_DIR, RESULT_FILE, StepExit

#: Lines of step output kept for error messages and `StepResult.log_tail`.
LOG_TAIL_LINES = 40


@dataclass
class StepResult:
    """How a step ended, and what it wrote.

    Attributes:
        action: derive, test or probe.
        runner: "process" or "docker".
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
    return logging.getLogger("lineage.tasks.step")


class LogTail:
    """Forward step output line by line to a logger, keeping the last lines."""

    def __init__(self, logger: logging.Logger | logging.LoggerAdapter[Any], prefix: str) -> None:
        self.logger = logger
        self.prefix = prefix
        self.lines: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        self._partial = ""

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
            self.logger.info("%s %s", self.prefix, line)


def check_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Host-side checks before anything runs: known action, inputs exist, out usable.

    Raises:
        RunnerError: an input path that does not exist, or an output folder in use.
    """
    spec = dict(spec)
    if spec.get("action") not in ("derive", "test", "probe"):
        raise RunnerError(f"unknown step action {spec.get('action')!r}")
    if not isinstance(spec.get("out"), str | os.PathLike):
        raise RunnerError("step spec needs an output folder ('out')")
    for path in input_paths(spec):
        if not Path(path).exists():
            raise RunnerError(f"step input {path} does not exist")
    out = Path(spec["out"]).absolute()
    if out.exists() and any(out.iterdir()):
        # A leftover result.json from an earlier try would read as this run's result.
        raise RunnerError(f"output folder {out} is not empty")
    out.mkdir(parents=True, exist_ok=True)
    spec["out"] = str(out)
    return spec


def input_paths(spec: Mapping[str, Any]) -> Iterator[str]:
    """Every host path a step must find: parents, model, code folders.

    `data` is not among them: it may name a shipped data set rather than a file.
    """
    yield from (str(p) for p in spec.get("parents") or [])
    if spec.get("model"):
        yield str(spec["model"])
    yield from (str(p) for p in spec.get("code") or [])


@contextmanager
def spec_file(spec: Mapping[str, Any]) -> Iterator[Path]:
    """The spec written to a private temp folder (readable by the container's user)."""
    with tempfile.TemporaryDirectory(prefix="lineage-spec-") as tmp:
        folder = Path(tmp)
        path = folder / "spec.json"
        path.write_text(json.dumps(dict(spec), indent=1, default=str))
        folder.chmod(0o755)
        path.chmod(0o644)
        yield path


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def read_outcome(
    spec: Mapping[str, Any], exit_code: int, log_tail: Iterable[str], where: str
) -> dict[str, Any]:
    """Turn a finished step's exit code and files into its result, or raise.

    Signals and resource kills are the caller's to diagnose first (only it knows about
    timeouts and cgroup OOM flags); this handles the step's own ways of ending.

    Raises:
        NetworkAccessError: the step tried to connect out.
        StepFailedError: any other non-zero exit, or a success without a result.
    """
    out = Path(spec["out"])
    action = spec["action"]
    tail = list(log_tail)
    if exit_code == StepExit.OK:
        result = _read_json(out / RESULT_FILE)
        if result is None:
            raise StepFailedError(
                f"{action} step {where} exited 0 but wrote no readable {RESULT_FILE}", 0, None
            )
        return result
    error = _read_json(out / ERROR_FILE) or {}
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
        spec: Mapping[str, Any],
        *,
        timeout_s: float | None = None,
        logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
    ) -> StepResult:
        """Run the step; return its result or raise a `RunnerError` subclass.

        Args:
            spec: the step spec (see `tasks.step`), with host paths.
            timeout_s: kill the step after this many seconds (`StepTimeoutError`).
            logger: where the step's output lines go; default: the Prefect run logger
                inside a Prefect run, else `lineage.tasks.step`.
        """
