"""The inline runner: the step in this very process.

No process start and no imports to pay for again, so it is the fastest runner, and the
one that can show a recipe's progress bar; but also no isolation at all (the step can
touch anything this process can, and no network guard is installed: an audit hook
could never be removed from the caller). Use it for your own recipes on your own
machine; the process and docker runners for everything else.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from lineage.errors import LineageError
from lineage.steps.runners.base import Runner, StepLogger, StepResult, check_spec
from lineage.steps.runners.errors import StepFailedError
from lineage.steps.spec import RESULT_FILE, StepSpec

if TYPE_CHECKING:
    from lineage.recipes import TrainingProgress


class InlineRunner(Runner):
    """Run steps in this process (see the module docstring).

    Args:
        progress: called as `progress(step, total_steps, loss)` while a recipe trains.
        threads: torch threads of a step whose spec names none (default: the
            determinism default).
    """

    name: ClassVar[str] = "inline"

    def __init__(
        self, progress: TrainingProgress | None = None, threads: int | None = None
    ) -> None:
        self.progress = progress
        self.threads = threads

    def run_step(
        self,
        spec: StepSpec,
        *,
        timeout_s: float | None = None,
        logger: StepLogger | None = None,
    ) -> StepResult:
        """Run the step here; a recipe's own error passes through unchanged (it is
        already one clear line). `timeout_s` cannot be enforced in-process."""
        from lineage.steps.entry import execute

        checked = check_spec(spec, self.threads)
        started = time.monotonic()
        try:
            # Without a callback, no progress lines: this process's stdout is the
            # caller's (a `--json` answer, say), not a step log.
            result = execute(checked, self.progress or _no_progress)
        except LineageError:
            raise
        except Exception as exc:  # a bug in a recipe: name it, as the other runners do
            raise StepFailedError(
                f"{checked.action} step in this process crashed: {type(exc).__name__}: {exc}",
                70,
                type(exc).__name__,
            ) from exc
        result["action"] = checked.action
        path = os.path.join(checked.out, RESULT_FILE)
        with open(path, "w") as handle:  # what the other runners leave, for inspection
            json.dump(result, handle, indent=1, sort_keys=True, default=str)
        return StepResult(
            action=checked.action,
            runner=self.name,
            out_dir=Path(checked.out),
            result=result,
            seconds=time.monotonic() - started,
        )


def _no_progress(*args: Any, **kwargs: Any) -> None:
    """A progress callback that reports nothing."""
