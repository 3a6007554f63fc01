"""Shared CLI plumbing: the workspace option, plain and JSON output, progress display.

User strings (model names, messages, tags, test names) are printed as plain text:
never parsed as rich markup (`[/bold]` in a commit message must not crash `log`) and
with control characters replaced (a raw ESC sequence must not reach the terminal).
Piped output is not wrapped or cut to the terminal's width.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from lineage.records import DERIVATION_KINDS

if TYPE_CHECKING:
    from lineage.records import VersionInfo
    from lineage.workspace import Workspace


def _console(stderr: bool) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    # Not a terminal: no width limit (a pipe or a file gets whole lines), no colours.
    return Console(stderr=stderr, width=None if stream.isatty() else 10_000)


console = _console(stderr=False)
err_console = _console(stderr=True)

JsonOption = typer.Option(False, "--json", help="Print one JSON document on stdout.")

#: Where a step runs: this process, a subprocess, a container (the names of
#: `lineage.steps.runners.RUNNER_NAMES`, checked against it by a test).
RunnerName = Literal["inline", "process", "docker"]

#: The help of a --kind option (the choices are checked by its `Kind` type).
KIND_HELP = f"How it was derived: {', '.join(DERIVATION_KINDS)}."


def clean(value: object) -> str:
    """`value` as one line of plain text: control characters (ESC, CR, BEL...) shown
    as `\\x1b`-style escapes, so user strings cannot drive the terminal."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in text)


def say(*parts: object, stderr: bool = False, style: str | None = None) -> None:
    """Print plain text (no markup, no highlighting) built from `parts`."""
    target = err_console if stderr else console
    target.print(Text(" ".join(clean(p) for p in parts), style=style or ""), soft_wrap=True)


def plain_table(title: str, columns: list[str], rows: Sequence[Sequence[object]]) -> Table:
    """A table whose cells are plain text (never markup)."""
    table = Table(title=Text(clean(title)), title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(Text(clean(cell)) for cell in row))
    return table


def workspace_from(ctx: typer.Context) -> Workspace:
    """Open the workspace chosen by --workspace, $LINEAGE_WORKSPACE or the cwd."""
    from lineage.workspace import Workspace

    root = (ctx.find_root().obj or {}).get("workspace")
    return Workspace.open(root)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def version_line(version: VersionInfo) -> str:
    """`ft@2 [champion] ← base@1 (finetune)`."""
    parents = ", ".join(f"{link.ref} ({link.kind})" for link in version.derivation_parents)
    aliases = f" [{', '.join(version.aliases)}]" if version.aliases else ""
    origin = f" ← {parents}" if parents else ""
    return f"{version.ref}{aliases}{origin}"


@contextmanager
def byte_progress(description: str, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """A progress bar fed by callback(done_bytes, total_bytes); silent when disabled
    (JSON output, or stderr not a terminal)."""
    if not enabled or not err_console.is_terminal:
        yield lambda done, total: None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    ) as progress:
        task = progress.add_task(clean(description), total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update


#: Without a terminal, a training recipe prints a line at every this fraction of its steps.
PROGRESS_LINE_FRACTION = 0.1
#: ... and at least this often while steps are slow (a long step count, a slow machine).
PROGRESS_LINE_EVERY_S = 30.0


class _ProgressLines:
    """Progress of a recipe as plain lines on stderr (CI logs, pipes): every
    `PROGRESS_LINE_FRACTION` of the steps (or `PROGRESS_LINE_EVERY_S`), with the loss
    and an ETA; then one line when validation and storing begin and one when done."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.started = time.monotonic()
        self.last_line = self.started
        self.last_step = 0
        self.trained = False

    def __call__(self, step: int, total: int, loss: float) -> None:
        now = time.monotonic()
        every = max(1, int(total * PROGRESS_LINE_FRACTION))
        due = step // every > self.last_step // every or now - self.last_line >= (
            PROGRESS_LINE_EVERY_S
        )
        # A one-step recipe (quantize, merge) has no training to report, only the rest.
        if total > 1 and (step >= total or due):
            eta = (now - self.started) / max(step, 1) * max(total - step, 0)
            say(
                f"{self.label}: step {step}/{total}, loss {loss:.4f}, eta {eta:.0f} s",
                stderr=True,
            )
            self.last_line = now
        self.last_step = step
        if step >= total and not self.trained:
            self.trained = True
            say(f"{self.label}: validating and storing", stderr=True)

    def finish(self) -> None:
        say(f"{self.label}: done in {time.monotonic() - self.started:.0f} s", stderr=True)


@contextmanager
def training_progress(
    label: str, enabled: bool = True
) -> Iterator[Callable[[int, int, float], None] | None]:
    """Progress of a recipe run, fed by callback(step, total_steps, loss) after each
    optimizer step. On a terminal, a bar (steps, loss, elapsed time) that turns into
    "validating and storing" after the last step and lasts until the version is
    stored; otherwise plain lines (`_ProgressLines`): CI logs get progress, not silence."""
    if not enabled:
        yield None
        return
    if not err_console.is_terminal:
        lines = _ProgressLines(label)
        yield lines
        lines.finish()
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        # Until the first step: checking the parents out and loading them.
        task = bar.add_task(clean(f"{label}: preparing"), total=None, loss=float("nan"))

        def update(step: int, total: int, loss: float) -> None:
            description = clean(
                f"{label}: validating and storing" if step >= total else f"{label}: training"
            )
            bar.update(task, completed=step, total=total, loss=loss, description=description)

        yield update


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """`K=V` pairs into a dict; V is parsed as JSON when it can be (numbers, lists)."""
    from lineage.errors import UsageError

    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--param expects KEY=VALUE, got {pair!r}")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


ThreadsOption = typer.Option(
    None,
    "--threads",
    min=1,
    metavar="N",
    help="Torch threads of each step (default: 2, fewer when steps share the cores); "
    "the same count gives the same bytes, and it is recorded with the version.",
    show_default=False,
)


def step_runner(name: str, threads: int | None, progress: Any = None) -> Any:
    """The runner a recipe command asked for, by name, with its thread count (and the
    progress callback of the in-process runner)."""
    from lineage.steps.runners import check_runner_name, get_runner

    options: dict[str, Any] = {"threads": threads}
    if check_runner_name(name) == "inline":
        options["progress"] = progress
    return get_runner(name, **options)
