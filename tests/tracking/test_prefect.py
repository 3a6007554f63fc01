"""The Prefect side on a real (temporary) Prefect server: the promotion flow, the
promotion events, and `prefect deploy` of deployments.yaml.

A model that requires approval waits for a reviewer's typed decision (approve/reject,
reviewer, reason), which lands in the alias history. A deployment's run *suspends*
(its process exits, no worker is held) and is rescheduled when resumed: tested with a
real runner serving the flow in another process. A promotion and a rollback emit
`lineage.model.promoted` and `lineage.model.rolled_back`. The docker deployment refuses
to deploy without the workspace to mount; every flow takes `workspace`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Nothing may leak into ~/.prefect or phone home.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="lineage-test-prefect-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from lineage.errors import PromotionError
from lineage.ops.add import add, commit
from lineage.ops.promote import set_model_policy
from lineage.workspace import Workspace

from .conftest import record_results

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def prefect_api() -> Iterator[str]:
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield str(PREFECT_API_URL.value())


def _gated(tmp_path: Path, tiny_weights: Any) -> Workspace:
    ws = Workspace.init(tmp_path / "ws")
    add(ws, "gated", source=tiny_weights(0))
    record_results(ws, "gated@1")
    set_model_policy(ws, "gated", require_approval=True)
    return ws


def _wait_for(flow_run_id: Any, state_type: str, timeout: float = 180) -> Any:
    from prefect import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            run = client.read_flow_run(flow_run_id)
            if run.state and run.state.type.value == state_type:
                return run
            if run.state and run.state.is_final():
                raise AssertionError(f"flow run ended {run.state.name}: {run.state.message}")
            time.sleep(0.5)
    raise AssertionError(f"flow run did not reach {state_type} in {timeout}s")


def _paused_run_of(flow_name: str, timeout: float = 90) -> Any:
    from prefect import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            for run in client.read_flow_runs():
                paused = run.state is not None and run.state.type.value == "PAUSED"
                if paused and client.read_flow(run.flow_id).name == flow_name:
                    return run
            time.sleep(0.5)
    raise AssertionError(f"no {flow_name} run paused in {timeout}s")


def test_a_rejection_is_recorded_and_promotes_nothing(
    prefect_api: str, tmp_path: Path, tiny_weights: Any
) -> None:
    from prefect.flow_runs import resume_flow_run

    from flows.promotion import promote_flow

    ws = _gated(tmp_path, tiny_weights)
    outcome: dict[str, Any] = {}

    def run_flow() -> None:
        try:
            outcome["result"] = promote_flow(
                "gated@1", workspace=str(ws.root), reason="release", approval_timeout_s=120
            )
        except BaseException as exc:  # reported by the main thread
            outcome["error"] = exc

    worker = threading.Thread(target=run_flow, daemon=True)
    worker.start()
    paused = _paused_run_of("lineage-promote")
    assert paused.state.name == "Paused"  # run directly: no deployment to reschedule it
    assert ws.model("gated").aliases == {}  # nothing moves before a decision
    resume_flow_run(
        paused.id, run_input={"decision": "reject", "reviewer": "bob", "reason": "too risky"}
    )
    worker.join(timeout=120)
    assert isinstance(outcome.get("error"), PromotionError)
    assert "rejected by bob: too risky" in str(outcome["error"])
    assert ws.model("gated").aliases == {}
    last = ws.alias_history("gated")[-1]
    assert (last.action, last.actor, last.reason, last.to_version) == (
        "reject",
        "bob",
        "too risky",
        1,
    )


@contextlib.contextmanager
def _served_promotion_flow(api_url: str) -> Iterator[None]:
    """A real runner serving the promotion flow in its own process (as a worker would)."""
    env = {
        **os.environ,
        "PREFECT_API_URL": api_url,
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    code = (
        "from flows.promotion import promote_flow\n"
        "promote_flow.serve(name='gated-test', print_starting_message=False)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_a_deployed_promotion_suspends_until_approved(
    prefect_api: str, tmp_path: Path, tiny_weights: Any
) -> None:
    from prefect import get_client
    from prefect.deployments import run_deployment
    from prefect.flow_runs import resume_flow_run

    ws = _gated(tmp_path, tiny_weights)
    with _served_promotion_flow(prefect_api):
        deadline = time.monotonic() + 120
        with get_client(sync_client=True) as client:
            while True:
                try:
                    client.read_deployment_by_name("lineage-promote/gated-test")
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
        run = run_deployment(
            "lineage-promote/gated-test",
            parameters={"ref": "gated@1", "workspace": str(ws.root), "reason": "release"},
            timeout=0,
        )
        suspended = _wait_for(run.id, "PAUSED")
        # Suspended, not paused: the run's process has exited and holds no worker.
        assert suspended.state.name == "Suspended"
        assert ws.model("gated").aliases == {}
        resume_flow_run(
            run.id, run_input={"decision": "approve", "reviewer": "alice", "reason": "LGTM"}
        )
        _wait_for(run.id, "COMPLETED")
    assert ws.model("gated").aliases == {"champion": 1}
    decision, promotion = ws.alias_history("gated")[-2:]
    assert (decision.action, decision.actor, decision.reason) == ("approve", "alice", "LGTM")
    assert promotion.action == "promote"
    assert promotion.reason == "release LGTM (approved by alice)"


def _events(api_url: str, name: str, model: str, count: int) -> list[dict[str, Any]]:
    """The events `name` about `model` the server stored (it persists them in batches)."""
    import httpx

    deadline = time.monotonic() + 60
    while True:
        response = httpx.post(
            f"{api_url}/events/filter",
            json={"filter": {"event": {"name": [name]}}, "limit": 50},
            timeout=30,
        )
        response.raise_for_status()
        found = [
            event
            for event in response.json()["events"]
            if event["resource"]["prefect.resource.id"] == f"lineage.model.{model}"
        ]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def test_promotion_and_rollback_emit_events(
    prefect_api: str, tmp_path: Path, tiny_weights: Any
) -> None:
    ws = Workspace.init(tmp_path / "ws")
    add(ws, "evt", source=tiny_weights(0))
    commit(ws, "evt", source=tiny_weights(1))
    for ref in ("evt@1", "evt@2"):
        record_results(ws, ref)
    # The real commands, each in its own process, as from a shell or a CI job.
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "LINEAGE_WORKSPACE": str(ws.root)}
    for args in (
        ["promote", "evt@1", "evt@2", "--reason", "release"],  # one after the other
        ["rollback", "evt", "--reason", "regression"],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "lineage.cli.main", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert done.returncode == 0 and "warning" not in done.stderr, done.stderr

    promoted = _events(prefect_api, "lineage.model.promoted", "evt", 2)
    assert sorted(e["payload"]["ref"] for e in promoted) == ["evt@1", "evt@2"]
    (rolled,) = _events(prefect_api, "lineage.model.rolled_back", "evt", 1)
    assert rolled["resource"]["lineage.version"] == "1"
    assert rolled["payload"]["from_ref"] == "evt@2" and rolled["payload"]["reason"] == "regression"
    assert rolled["payload"]["workspace"] == str(ws.root)


def _deploy(api_url: str, name: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PREFECT_API_URL": api_url, **env}
    if "LINEAGE_WORKSPACE" not in env:
        full_env.pop("LINEAGE_WORKSPACE", None)
    command = ["--no-prompt", "deploy", "--prefect-file", "deployments.yaml", "--name", name]
    return subprocess.run(
        [sys.executable, "-m", "prefect", *command],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_docker_deployment_needs_its_workspace(prefect_api: str) -> None:
    from prefect import get_client

    pool = subprocess.run(
        [sys.executable, "-m", "prefect", "work-pool", "create", "lineage-docker", "-t", "docker"],
        env={**os.environ, "PREFECT_API_URL": prefect_api},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert pool.returncode == 0, pool.stderr
    refused = _deploy(prefect_api, "cascade-docker")
    assert refused.returncode != 0
    assert "set LINEAGE_WORKSPACE to the host workspace" in refused.stdout + refused.stderr
    with get_client(sync_client=True) as client:
        assert not [d for d in client.read_deployments() if d.name == "cascade-docker"]

    deployed = _deploy(prefect_api, "cascade-docker", LINEAGE_WORKSPACE="/srv/ws")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("lineage-cascade/cascade-docker")
    assert deployment.job_variables["volumes"] == ["/srv/ws:/srv/ws"]
    assert deployment.job_variables["env"] == {"LINEAGE_WORKSPACE": "/srv/ws"}


def test_every_deployment_names_the_workspace_parameter_alike() -> None:
    import importlib
    import inspect

    import yaml

    spec = yaml.safe_load((REPO / "deployments.yaml").read_text())
    concurrency = spec["definitions"]["concurrency"]
    for deployment in spec["deployments"]:
        path, name = deployment["entrypoint"].split(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        parameters = inspect.signature(getattr(module, name).fn).parameters
        assert "workspace" in parameters, deployment["name"]
        assert parameters["workspace"].default == "", deployment["name"]
        assert "workspace_dir" not in parameters
        given = deployment.get("parameters") or {}
        if "concurrency" in given:
            assert given["concurrency"] == concurrency, deployment["name"]
