"""Specific runner failures, all `lineage.errors.RunnerError` (exit code 16).

The cascade only needs "this node failed, here is one line why"; the subclasses let it
(and tests) tell a timeout from an OOM kill without parsing messages.
"""

from __future__ import annotations

from lineage.errors import RunnerError
from lineage.steps.engine import EngineUnavailableError

__all__ = [
    "EngineUnavailableError",
    "ImageNotFoundError",
    "NetworkAccessError",
    "OutOfMemoryError",
    "RunnerError",
    "StepFailedError",
    "StepTimeoutError",
]


class ImageNotFoundError(RunnerError):
    """The task image is not on the engine."""


class StepTimeoutError(RunnerError):
    """The step ran past its timeout and was killed."""


class OutOfMemoryError(RunnerError):
    """The step exceeded its memory limit and was killed by the kernel."""


class NetworkAccessError(RunnerError):
    """The step tried to open a network connection; steps run offline."""

    step_exit_code = 65  # StepExit.NETWORK: retrying cannot help


class StepFailedError(RunnerError):
    """The step exited non-zero: its recipe or test raised, or the spec was bad.

    Attributes:
        step_exit_code: the step's own exit code (see `lineage.steps.spec.StepExit`).
        error_type: the exception class name the step reported, if it reported one.
    """

    def __init__(self, message: str, step_exit_code: int, error_type: str | None) -> None:
        super().__init__(message)
        self.step_exit_code = step_exit_code
        self.error_type = error_type
