"""`lineage cascade` (re-derive, test and gate every descendant) and `lineage emit`."""

from __future__ import annotations

import os
from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from lineage.cli.complete import complete_ref
from lineage.cli.output import (
    JsonOption,
    RunnerName,
    clean,
    console,
    print_json,
    say,
    workspace_from,
)
from lineage.errors import TestsFailedError, UsageError

_STATUS_STYLE = {
    "promoted": "green",
    "candidate": "green",
    "failed": "red",
    "blocked": "yellow",
    "skipped": "dim",
}


def cascade(
    ctx: typer.Context,
    ref: str = typer.Argument(
        ...,
        metavar="REF",
        autocompletion=complete_ref,
        help="The new upstream version, e.g. base@2.",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan; run nothing."),
    runner: RunnerName = typer.Option(
        "process", "--runner", help="Where steps run: a subprocess, a container, or this process."
    ),
    warm: bool = typer.Option(
        True,
        "--warm/--no-warm",
        help="Run steps on warm workers (one subprocess or container per slot, reused "
        "from step to step), or start a fresh one for every step.",
    ),
    threads: int = typer.Option(
        None,
        "--threads",
        min=1,
        metavar="N",
        help="Torch threads of each step (default: 2, fewer when the steps at once would "
        "oversubscribe the cores); recorded with every version.",
        show_default=False,
    ),
    replaces: str = typer.Option(
        None,
        "--replaces",
        metavar="REF",
        autocompletion=complete_ref,
        help="The version REF supersedes (default: its previous version).",
    ),
    concurrency: int = typer.Option(
        2,
        "--concurrency",
        "-j",
        min=1,
        metavar="N",
        help="How many steps may run at once (one warm worker each).",
    ),
    retries: int = typer.Option(
        2, "--retries", min=0, metavar="N", help="Retries of a transient failure."
    ),
    track: bool = typer.Option(
        True, "--track/--no-track", help="Record runs, versions and aliases in MLflow."
    ),
    task_runner: str = typer.Option(
        None,
        "--task-runner",
        metavar="thread|dask",
        help="What runs the tasks: thread (a pool in this process; default) or dask "
        "(a Dask cluster). Default: $LINEAGE_TASK_RUNNER, else dask when a scheduler "
        "address is set, else thread.",
        show_default=False,
    ),
    dask_address: str = typer.Option(
        None,
        "--dask-address",
        metavar="ADDRESS",
        help="Scheduler of an existing Dask cluster, e.g. tcp://scheduler:8786 "
        "(default $LINEAGE_DASK_ADDRESS); without one, --task-runner dask starts a "
        "local cluster.",
        show_default=False,
    ),
    dask_workers: int = typer.Option(
        None,
        "--dask-workers",
        min=1,
        metavar="N",
        help="Worker processes of the local Dask cluster (default 2).",
        show_default=False,
    ),
    json_out: bool = JsonOption,
) -> None:
    """Re-derive every descendant of the version REF replaces, test it, promote what passes.

    Runs on Prefect: a configured API ($PREFECT_API_URL or the workspace's [prefect]
    api_url) records it there; otherwise a local Prefect server started for the command does.
    Exits 12 when a node failed or was blocked.

    Tasks run on a thread pool here, or with `--task-runner dask` on a local Dask
    cluster of `--dask-workers` processes, or on the cluster at `--dask-address`
    (its workers must see the workspace at the same path). Without a configured API,
    the local server's start-up costs seconds per command: `lineage server start`
    keeps one running.
    """
    from lineage.cascade.build import build_plan
    from lineage.cascade.cache import find_done
    from lineage.cascade.settings import resolve_task_runner
    from lineage.render.plan import describe_plan
    from lineage.steps.runners import check_runner_name

    check_runner_name(runner)
    task_runner = resolve_task_runner(task_runner, dask_address, dask_workers)
    workspace = workspace_from(ctx)
    plan = build_plan(workspace, ref, replaces)
    if dry_run:
        find_done(workspace, plan)
        if json_out:
            print_json(plan.to_dict())
        else:
            for line in describe_plan(plan):
                say(line)
        return
    summary = _run(
        workspace,
        plan.upstream,
        plan.replaces,
        runner,
        concurrency,
        retries,
        track=track,
        warm=warm,
        threads=threads,
        quiet=json_out,
        task_runner=task_runner,
        dask_address=dask_address,
        dask_workers=dask_workers,
    )
    if json_out:
        print_json(summary)
    else:
        console.print(_summary_table(summary))
    failed = summary["counts"].get("failed", 0) + summary["counts"].get("blocked", 0)
    if failed:
        raise TestsFailedError(
            f"cascade {plan.replaces} -> {plan.upstream}: {summary['counts'].get('failed', 0)} "
            f"failed, {summary['counts'].get('blocked', 0)} blocked"
        )


def _run(
    workspace: Any,
    upstream: str,
    replaces: str,
    runner: str,
    concurrency: int,
    retries: int,
    *,
    track: bool,
    warm: bool = True,
    threads: int | None = None,
    quiet: bool,
    task_runner: str = "thread",
    dask_address: str | None = None,
    dask_workers: int | None = None,
) -> dict[str, Any]:
    from lineage.cli.project import load
    from lineage.tracking.events import prefect_api_url

    api_url = prefect_api_url(workspace)
    if api_url:
        os.environ["PREFECT_API_URL"] = api_url
    else:
        from lineage.tracking.prefect_server import local_server

        # No API named: the local server starts first thing, alongside the workers'
        # imports and this process's import of Prefect (the flow waits for it).
        local_server()
    # Before Prefect is imported: it would otherwise try to send telemetry, and
    # lineage never reaches the internet on its own.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if task_runner == "thread":
        from lineage.cascade.warmup import warm_up

        # The workers import torch & co. while this process imports Prefect.
        warm_up(runner, concurrency, warm=warm, host=False, threads=threads)
    flows = load("flows.cascade")
    # The flow logs the plan once and one line per node event; those lines are the
    # progress shown here. Step output stays in the task runs' logs (the Prefect UI).
    flow_lines_shown = _quiet_task_runs_on_console()

    def show(event: str, node: dict[str, Any]) -> None:
        if quiet or flow_lines_shown:
            return
        if event == "plan":
            for line in node["lines"]:
                say(line, stderr=True)
        elif event == "start":
            say(f"→ deriving {node['model']} (replaces {node['old_ref']})", stderr=True)
        elif event == "derived":
            how = "reused" if node["cached"] else "derived"
            say(f"  {how} {node['new_ref']}, testing", stderr=True)
        elif event == "done":
            target = node["new_ref"] or node["old_ref"]
            note = f": {node['error']}" if node["error"] else ""
            say(
                f"  {node['status']} {target}{note}",
                stderr=True,
                style=_STATUS_STYLE.get(node["status"], ""),
            )

    with flows.listening(show):
        result: dict[str, Any] = flows.run_cascade(
            upstream,
            replaces=replaces,
            workspace=str(workspace.root),
            runner=runner,
            concurrency=concurrency,
            retries=retries,
            track=track,
            warm=warm,
            threads=threads,
            task_runner=task_runner,
            dask_address=dask_address,
            dask_workers=dask_workers,
        )
    return result


def _quiet_task_runs_on_console() -> bool:
    """Keep task runs' lines (step output, state changes, tracebacks) off the console,
    where the flow's own lines say what happens; they still reach the Prefect API.
    Returns whether the flow's INFO lines reach the console at all."""
    import logging

    def keep(record: logging.LogRecord) -> bool:
        # A task's warnings (retries) stay; its errors are the flow's one line per node.
        task_line = record.name.startswith("prefect.task_runs")
        return not task_line or record.levelno == logging.WARNING

    shown = False
    for handler in logging.getLogger().handlers:
        if type(handler).__name__ == "PrefectConsoleHandler":
            handler.addFilter(keep)
            shown = handler.level <= logging.INFO
    return shown and logging.getLogger("prefect.flow_runs").isEnabledFor(logging.INFO)


def _summary_table(summary: dict[str, Any]) -> Table:
    table = Table(
        title=Text(clean(f"cascade {summary['replaces']} → {summary['upstream']}")),
        title_justify="left",
    )
    for column in ("node", "old → new", "tests", "outcome", "aliases", "note"):
        table.add_column(column)
    for node in summary["nodes"]:
        tests = node["tests"]
        if not tests:
            label = "-"
        elif tests.get("skipped"):
            label = "passed earlier"
        else:
            label = f"{tests['total']} passed" if tests["passed"] else "failed"
        outcome = node["status"] + (" (reused)" if node["cached"] else "")
        table.add_row(
            Text(clean(node["model"])),
            Text(clean(f"{node['old_ref']} → {node['new_ref'] or '-'}")),
            Text(label),
            Text(outcome, style=_STATUS_STYLE.get(node["status"], "")),
            Text(clean(", ".join(node["aliases"]))),
            Text(clean(_short("; ".join(filter(None, [node["error"], *node["warnings"]]))))),
        )
    return table


def _short(text: str, limit: int = 90) -> str:
    # The table is a summary; the full message is in the JSON output and the flow's logs.
    return text if len(text) <= limit else text[: limit - 1] + "…"


def emit(
    ctx: typer.Context,
    ref: str = typer.Argument(
        ...,
        metavar="REF",
        autocompletion=complete_ref,
        help="The version to announce, e.g. base@2.",
    ),
    json_out: bool = JsonOption,
) -> None:
    """Emit `lineage.model.committed` for REF to Prefect (CI: a new upstream version).

    Needs a Prefect API: $PREFECT_API_URL or the workspace's [prefect] api_url.
    """
    from lineage.tracking.events import COMMITTED_EVENT, emit_committed, prefect_api_url

    workspace = workspace_from(ctx)
    version = workspace.resolve(ref)
    if not prefect_api_url(workspace):
        raise UsageError(
            "no Prefect API configured: set PREFECT_API_URL or [prefect] api_url in "
            ".lineage/config.toml (a cascade without a server: `lineage cascade REF`)"
        )
    event_id = emit_committed(workspace, version)
    if json_out:
        print_json({"event": COMMITTED_EVENT, "id": event_id, "ref": version.ref})
    else:
        say(f"Emitted {COMMITTED_EVENT} for {version.ref} (event {event_id})")


def register(app: typer.Typer) -> None:
    app.command()(cascade)
    app.command()(emit)
