"""Runners execute one step spec: in this process, a subprocess or a container.

>>> sorted(RUNNER_NAMES)
['docker', 'inline', 'process']
>>> get_runner("process").name
'process'

The docker runner imports the Docker SDK only when a step runs, so choosing a runner
costs nothing on machines without an engine.
"""

from __future__ import annotations

from typing import Any

from lineage.errors import RunnerError, UsageError
from lineage.steps.runners.base import Runner, StepResult, step_logger
from lineage.steps.runners.docker import DockerRunner
from lineage.steps.runners.errors import (
    EngineUnavailableError,
    ImageNotFoundError,
    NetworkAccessError,
    OutOfMemoryError,
    StepFailedError,
    StepTimeoutError,
)
from lineage.steps.runners.inline import InlineRunner
from lineage.steps.runners.process import ProcessRunner

#: Where steps can run, by the name `--runner` takes: this process, a subprocess, a
#: container.
RUNNERS: dict[str, type[Runner]] = {
    "inline": InlineRunner,
    "process": ProcessRunner,
    "docker": DockerRunner,
}
RUNNER_NAMES = tuple(RUNNERS)

__all__ = [
    "RUNNERS",
    "RUNNER_NAMES",
    "DockerRunner",
    "EngineUnavailableError",
    "ImageNotFoundError",
    "InlineRunner",
    "NetworkAccessError",
    "OutOfMemoryError",
    "ProcessRunner",
    "Runner",
    "RunnerError",
    "StepFailedError",
    "StepResult",
    "StepTimeoutError",
    "UnknownRunnerError",
    "check_runner_name",
    "get_runner",
    "step_logger",
]


class UnknownRunnerError(RunnerError, UsageError):
    """A runner name that is not one of `RUNNER_NAMES` (bad usage: exit 2)."""

    exit_code = UsageError.exit_code


def check_runner_name(name: str) -> str:
    """`name` if it names a runner, else a one-line `UnknownRunnerError` listing them."""
    if name not in RUNNERS:
        raise UnknownRunnerError(f"unknown runner {name!r}; use one of {', '.join(RUNNER_NAMES)}")
    return name


def get_runner(name: str = "process", **options: Any) -> Runner:
    """A runner by name (`inline`, `process` or `docker`), with its options (e.g.
    `memory="4g"` for docker)."""
    return RUNNERS[check_runner_name(name)](**options)
