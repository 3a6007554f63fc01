"""The cascade on a real local Prefect server: triggered by an event through a served
deployment, failing branches blocked exactly, and a killed run resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from cascade_helpers import REPO, VENV_BIN, build_family, child_env, version_counts

from lineage.ops.add import add, commit
from lineage.ops.promote import promote
from lineage.workspace import Workspace

pytestmark = pytest.mark.timeout(240)

DEPLOYMENT = "cascade-e2e"


def _serve_script(path: Path) -> Path:
    """A process serving the cascade with the trigger written in deployments.yaml."""
    path.write_text(
        textwrap.dedent(f"""
        import yaml
        from prefect import serve
        from prefect.events import DeploymentEventTrigger
        from flows.cascade import cascade_flow

        spec = yaml.safe_load(open({str(REPO / "deployments.yaml")!r}))
        cascade = next(d for d in spec["deployments"] if d["name"] == "cascade")
        triggers = [DeploymentEventTrigger(**t) for t in cascade["triggers"]]
        deployment = cascade_flow.to_deployment(
            name={DEPLOYMENT!r},
            parameters={{"runner": "inline", "track": False, "retries": 0,
                         "concurrency": 2}},
            triggers=triggers,
        )
        serve(deployment, print_starting_message=False)
    """)
    )
    return path


def _client(api_url: str) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}):
        return get_client(sync_client=True)


def _wait_for(predicate: Any, timeout_s: float, what: str, poll_s: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what}")


def _lineage(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "lineage"), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_event_triggers_served_cascade(prefect_server: str, tmp_path: Path) -> None:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    ws = Workspace.init(tmp_path / "ws")
    new_base = build_family(ws, tmp_path / "weights", commit_base=False)
    env = child_env(prefect_server, PREFECT_RUNNER_POLL_FREQUENCY="1", PREFECT_LOGGING_LEVEL="INFO")
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 (closed below)
    server = subprocess.Popen(
        [sys.executable, str(_serve_script(tmp_path / "serve.py"))],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    client = _client(prefect_server)
    try:
        name_filter = DeploymentFilter(name=DeploymentFilterName(any_=[DEPLOYMENT]))
        deployment = _wait_for(
            lambda: client.read_deployments(deployment_filter=name_filter),
            90,
            "the served deployment",
        )[0]
        # serve() registers the trigger (an automation) right after the deployment.
        _wait_for(
            lambda: [a for a in client.read_automations() if a.name.startswith(f"{DEPLOYMENT}__")],
            30,
            "the trigger",
        )
        # `lineage commit` with a Prefect API configured announces the new version.
        committed = _lineage(
            "commit",
            "base",
            "--from",
            str(new_base),
            "--json",
            env=child_env(prefect_server),
            cwd=ws.root,
        )
        assert committed.returncode == 0, committed.stderr
        assert json.loads(committed.stdout)["event_emitted"] is True

        def finished_run() -> Any:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id={"any_": [deployment.id]})
            )
            done = [r for r in runs if r.state is not None and r.state.is_final()]
            return done[0] if done else None

        flow_run = _wait_for(finished_run, 150, "the triggered cascade to finish", poll_s=1)
    finally:
        _stop(server)
        log.close()
    output = (tmp_path / "serve.log").read_text(errors="replace")[-3000:]
    assert flow_run.state.is_completed(), output
    assert flow_run.parameters["upstream"] == "base@2"
    assert flow_run.parameters["replaces"] == "base@1"
    assert flow_run.name == "cascade base@2 (replaces base@1)"
    assert {"lineage", "cascade", "upstream:base@2"} <= set(client.read_flow_run(flow_run.id).tags)

    ws = Workspace.open(tmp_path / "ws")
    counts = version_counts(ws)
    # Re-derived: every descendant except the failing branch.
    assert {m: counts[m] for m in ("ft", "ft-q", "merged", "slow")} == dict.fromkeys(
        ("ft", "ft-q", "merged", "slow"), 2
    )
    # The failing node and exactly its subtree were not derived.
    assert counts["broken"] == 1 and counts["broken-child"] == 1
    # A node that fails its tests is committed but not promoted.
    assert counts["tight"] == 2 and not ws.resolve("tight@2").aliases
    ft2, merged2 = ws.resolve("ft@2"), ws.resolve("merged@2")
    assert [link.ref for link in ft2.derivation_parents] == ["base@2"]
    assert ft2.previous_version is not None and ft2.previous_version.ref == "ft@1"
    assert [link.ref for link in merged2.derivation_parents] == ["ft@2", "side@1"]
    assert [link.ref for link in ws.resolve("ft-q@2").derivation_parents] == ["ft@2"]
    assert ft2.recipe_id == "toy_recipes:scale"
    # Test results are stored per new version: the inherited test, and tight's own.
    assert ws.graph.latest_results(ft2.id)["small-enough"].passed
    tight = ws.graph.latest_results(ws.resolve("tight@2").id)
    assert tight["small-enough"].passed and not tight["tiny-budget"].passed
    # Gate: passed (no failing tests) and models promote automatically.
    assert "champion" in ft2.aliases
    events = ws.alias_history("ft", "champion")
    assert events[-1].actor == "lineage-cascade" and "base@1 -> base@2" in events[-1].reason
    assert str(flow_run.id) in events[-1].reason
    # Artifacts: summary table, lineage subtree and progress.
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    artifacts = client.read_artifacts(
        artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run.id]))
    )
    kinds = {a.type for a in artifacts}
    assert {"table", "markdown", "progress"} <= kinds
    progress = next(a for a in artifacts if a.type == "progress")
    assert float(progress.data) == 100.0
    table = json.loads(next(a for a in artifacts if a.type == "table").data)
    outcomes = {row["node"]: row["outcome"] for row in table}
    assert outcomes["broken"] == "failed" and outcomes["broken-child"] == "blocked"
    assert outcomes["ft"] == "promoted" and outcomes["tight"] == "failed"


def test_killed_run_resumes_without_redoing_nodes(prefect_server: str, tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    flag = tmp_path / "hang"
    flag.write_text("hold the slow node")
    build_family(ws, tmp_path / "weights", hang_flag=flag)
    env = child_env(prefect_server)
    args = [
        "cascade",
        "base@2",
        "--runner",
        "process",  # the default: each step in its own subprocess
        "--no-track",
        "--retries",
        "0",
        "--concurrency",
        "2",
        "--json",
    ]
    first = subprocess.Popen(
        [str(VENV_BIN / "lineage"), *args],
        env=env,
        cwd=ws.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:

        def others_done() -> bool:
            models = {m.name: m for m in Workspace.open(ws.root).models()}
            return (
                all(models[m].aliases.get("champion") == 2 for m in ("ft", "ft-q", "merged"))
                and models["tight"].latest == 2
            )

        _wait_for(others_done, 120, "the fast nodes to finish before the slow one")
        assert version_counts(ws)["slow"] == 1  # still hanging in its derive
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # a crash: no cleanup of any kind
        first.wait()
    before = version_counts(ws)
    champion_events = len(ws.alias_history("ft", "champion"))
    flag.unlink()

    second = _lineage(*args, env=env, cwd=ws.root)
    assert second.returncode == 12, second.stderr  # `broken` failed, its child blocked
    summary = {n["model"]: n for n in json.loads(second.stdout)["nodes"]}
    for model in ("ft", "ft-q", "merged"):
        assert summary[model]["cached"], summary[model]
        assert summary[model]["status"] == "promoted"
        assert summary[model]["tests"].get("skipped")  # gated before: not re-tested
    assert summary["slow"]["status"] == "promoted" and not summary["slow"]["cached"]
    assert summary["broken"]["status"] == "failed"
    assert summary["broken-child"]["status"] == "blocked"
    # Derived before the kill but never gated (its tests fail): re-tested, not re-derived.
    assert summary["tight"]["cached"] and summary["tight"]["status"] == "failed"
    after = version_counts(ws)
    assert {m: after[m] for m in ("ft", "ft-q", "merged", "tight")} == {
        m: before[m] for m in ("ft", "ft-q", "merged", "tight")
    }
    assert after["slow"] == 2
    # Gating again recorded nothing new.
    assert len(ws.alias_history("ft", "champion")) == champion_events


def test_deployments_yaml_deploys(prefect_server: str, tmp_path: Path) -> None:
    """`prefect deploy --prefect-file deployments.yaml` creates the cascade (with its
    event trigger and a concurrency limit), the nightly sweep (scheduled) and the
    promote/rollback deployments on the process pool."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    env = child_env(prefect_server)
    prefect = str(VENV_BIN / "prefect")
    pool = subprocess.run(
        [prefect, "work-pool", "create", "lineage-process", "--type", "process", "--overwrite"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert pool.returncode == 0, pool.stdout + pool.stderr
    names = ["cascade", "nightly-sweep", "promote", "rollback"]
    deployed = subprocess.run(
        [
            prefect,
            "--no-prompt",
            "deploy",
            "--prefect-file",
            "deployments.yaml",
            *[arg for name in names for arg in ("--name", name)],
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert deployed.returncode == 0, deployed.stdout[-2000:] + deployed.stderr[-2000:]
    client = _client(prefect_server)
    found = {
        d.name: d
        for d in client.read_deployments(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=names))
        )
    }
    assert set(found) == set(names)
    assert found["cascade"].parameters["runner"] == "process"
    assert found["cascade"].global_concurrency_limit.limit == 1
    assert found["nightly-sweep"].schedules[0].schedule.cron == "0 3 * * *"
    automations = [a for a in client.read_automations() if a.name.startswith("cascade__")]
    assert automations and "lineage.model.committed" in automations[0].trigger.expect

    # `lineage emit REF` (CI) sends the event the trigger listens for; with no
    # worker on the pool the triggered run just waits, scheduled.
    ws = Workspace.init(tmp_path / "ws")
    from lineage.testing import write_tiny_weights

    add(ws, "base", source=write_tiny_weights(tmp_path / "w0", 0))
    commit(ws, "base", source=write_tiny_weights(tmp_path / "w1", 1))
    emitted = _lineage("emit", "base@2", "--json", env=env, cwd=ws.root)
    assert emitted.returncode == 0, emitted.stderr
    assert json.loads(emitted.stdout)["ref"] == "base@2"

    def triggered() -> Any:
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id={"any_": [found["cascade"].id]})
        )
        return [r for r in runs if r.parameters.get("workspace") == str(ws.root)]

    run = _wait_for(triggered, 60, "the event to schedule a cascade run")[0]
    assert run.parameters["upstream"] == "base@2" and run.parameters["replaces"] == "base@1"


def test_sweep_reports_regressions(prefect_server: str, tmp_path: Path) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.sweep import sweep_flow
    from lineage.ops.tests import declare_model_test, run_tests

    ws = Workspace.init(tmp_path / "ws")
    from lineage.testing import write_tiny_weights

    add(ws, "base", source=write_tiny_weights(tmp_path / "w0", 0))
    declare_model_test(ws, "base", "small-enough", "size", {"max_params": 100_000})
    assert run_tests(ws, "base@1").passed
    promote(ws, "base@1", mlflow="off")
    with temporary_settings({PREFECT_API_URL: prefect_server}):
        state = sweep_flow(workspace=str(ws.root), track=False, return_state=True)
        assert state.is_completed()
        assert state.result()["regressed"] == []
        # The budget shrinks: yesterday's pass is today's regression.
        declare_model_test(ws, "base", "small-enough", "size", {"max_params": 10})
        state = sweep_flow(workspace=str(ws.root), track=False, return_state=True)
    assert state.is_failed()
    summary = state.result(raise_on_failure=False)
    assert summary["regressed"] == ["base@1"]
    assert summary["champions"][0]["regressions"] == ["small-enough"]
