"""Runners execute one step spec (see `tasks.step`) in a subprocess or a container.

>>> from tasks.runners import get_runner
>>> get_runner("process").name
'process'

The docker runner imports the Docker SDK only when a step runs, so choosing a runner
costs nothing on machines without an engine.
"""

from __future__ import annotations

from typing import Any

from tasks.runners.base import Runner, StepResult, step_logger
from tasks.runners.docker import DockerRunner
from tasks.runners.errors import (
    EngineUnavailableError,
    ImageNotFoundError,
    NetworkAccessError,
    OutOfMemoryError,
    RunnerError,
    StepFailedError,
    StepTimeoutError,
)
from tasks.runners.process import ProcessRunner

RUNNERS: dict[str, type[Runner]] = {"process": ProcessRunner, "docker": DockerRunner}

__all__ = [
    "RUNNERS",
    "DockerRunner",
    "EngineUnavailableError",
    "ImageNotFoundError",
    "NetworkAccessError",
    "OutOfMemoryError",
    "ProcessRunner",
    "Runner",
    "RunnerError",
    "StepFailedError",
    "StepResult",
    "StepTimeoutError",
    "get_runner",
    "step_logger",
]


def get_runner(name: str = "process", **options: Any) -> Runner:
    """A runner by name (`process` or `docker`), with its options (e.g. `memory="4g"`).

    Raises:
        RunnerError: an unknown runner name.
    """
    try:
        cls = RUNNERS[name]
    except KeyError:
        raise RunnerError(f"unknown runner {name!r} (choose {' or '.join(RUNNERS)})") from None
    return cls(**options)
