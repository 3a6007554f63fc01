"""The nightly sweep: re-test every champion and report regressions.

A champion passed its tests when it was promoted; data, test thresholds or the test
code may have moved since. The sweep re-runs each champion's own and inherited
tests and compares with the newest result each test had before: a test that passed
then and fails now is a regression. The flow publishes a table artifact and ends
Failed when there is any regression, so a Prefect automation can notify someone.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.futures import wait
from prefect.runtime import flow_run
from prefect.states import Completed, Failed
from prefect.task_runners import ThreadPoolTaskRunner

from lineage.cascade.node import test_node, track_tests
from tasks.common import flow_run_id, open_workspace, retry_if_transient


def passed_by_test(workspace: Any, version_id: int) -> dict[str, bool]:
    """test name -> passed, for the newest result of each test of one version."""
    return {
        name: result.passed for name, result in workspace.graph.latest_results(version_id).items()
    }


@task(
    name="retest-champion",
    retries=2,
    retry_delay_seconds=[1, 5],
    retry_condition_fn=retry_if_transient,
    cache_policy=NO_CACHE,
)
def retest_task(workspace_root: str, ref: str, track: bool = True) -> dict[str, Any]:
    """Re-run the tests of one champion; returns before/after per test."""
    workspace = open_workspace(workspace_root)
    version = workspace.resolve(ref)
    before = passed_by_test(workspace, version.id)
    outcome = test_node(workspace, ref)
    after = passed_by_test(workspace, version.id)
    regressions = sorted(n for n, ok in after.items() if not ok and before.get(n) is True)
    warning = ""
    if track:
        warning = track_tests(workspace, ref, cascade_id="nightly-sweep", flow_run_id=flow_run_id())
    return {
        "ref": ref,
        "passed": outcome.passed,
        "total": outcome.total,
        "failed": outcome.failed,
        "regressions": regressions,
        "warning": warning,
    }


@flow(
    name="lineage-sweep",
    flow_run_name="nightly sweep of champions",
    # prefect types a flow's task runner invariantly over its future type
    task_runner=ThreadPoolTaskRunner(max_workers=8),  # type: ignore[arg-type]
    description="Re-test every champion and report regressions.",
)
def sweep_flow(
    workspace: str = "", concurrency: int = 2, track: bool = True
) -> State[dict[str, Any]]:
    """Re-test the champion of every model; Failed when any test regressed.

    Args:
        workspace: the workspace directory (default: $LINEAGE_WORKSPACE or the cwd).
        concurrency: how many champions are tested at once.
        track: record the test runs in MLflow.
    """
    from lineage.workspace import Workspace

    logger = get_run_logger()
    root = str(Workspace.open(workspace or None).root)
    ws = open_workspace(root)
    champions = [
        f"{m.name}@{m.aliases['champion']}" for m in ws.models() if "champion" in m.aliases
    ]
    logger.info("re-testing %d champion(s): %s", len(champions), ", ".join(champions))
    results: list[dict[str, Any]] = []
    for start in range(0, len(champions), max(1, concurrency)):
        batch = [
            retest_task.with_options(task_run_name=f"retest {ref}").submit(root, ref, track)
            for ref in champions[start : start + max(1, concurrency)]
        ]
        wait(batch)
        for ref, future in zip(champions[start:], batch, strict=False):
            value = future.result(raise_on_failure=False)
            if isinstance(value, BaseException):
                value = {
                    "ref": ref,
                    "passed": False,
                    "total": 0,
                    "failed": [],
                    "regressions": [],
                    "warning": f"error: {value}",
                }
            results.append(value)
    regressed = [r for r in results if r["regressions"]]
    create_table_artifact(
        [
            {
                "champion": r["ref"],
                "tests": f"{r['total'] - len(r['failed'])}/{r['total']} passed",
                "regressions": ", ".join(r["regressions"]) or "-",
                "note": r["warning"],
            }
            for r in results
        ],
        key="nightly-sweep",
        description=f"{len(regressed)} of {len(results)} champion(s) regressed",
    )
    summary = {
        "flow_run_id": str(flow_run.id),
        "champions": results,
        "regressed": [r["ref"] for r in regressed],
    }
    if regressed:
        for r in regressed:
            logger.error("regression: %s now fails %s", r["ref"], ", ".join(r["regressions"]))
        return Failed(message=f"{len(regressed)} champion(s) regressed", data=summary)
    return Completed(message=f"{len(results)} champion(s) still pass", data=summary)
