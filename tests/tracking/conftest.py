"""Fixtures for the MLflow tests: a real `mlflow server`, tiny BERTs, test results."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from lineage.testing import free_port, require_service


@pytest.fixture(scope="session")
def mlflow_server() -> Iterator[str]:
    """A real MLflow tracking server on a free loopback port (SQLite backend, artifacts
    served by the server); yields its URL."""
    from lineage.tracking.backend import _template_db

    base = Path(tempfile.mkdtemp(prefix="lineage-mlflow-server-"))
    # Start from an already-migrated DB: a fresh one costs seconds of migrations.
    shutil.copyfile(_template_db(), base / "mlflow.db")
    port = free_port()
    log = open(base / "server.log", "w")  # noqa: SIM115 - closed in finally
    env = {**os.environ}
    env.pop("MLFLOW_TRACKING_URI", None)
    # No background job workers (huey consumers): the tests run none, and on shared
    # cores they slow the server's start several-fold.
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{base / 'mlflow.db'}",
            "--artifacts-destination",
            str(base / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=base,
        env=env,
        # Its own process group: the server forks workers, and teardown stops them all.
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        import requests

        deadline = time.monotonic() + 90
        ready = False
        while time.monotonic() < deadline and process.poll() is None:
            try:
                ready = requests.get(url + "/health", timeout=2).status_code == 200
            except requests.RequestException:
                ready = False
            if ready:
                break
            time.sleep(0.5)
        if not ready:
            log.flush()
            tail = (base / "server.log").read_text()[-2000:]
        require_service(ready, f"mlflow server did not start: {tail if not ready else ''}")
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_berts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny random BERT classifiers (2 labels) with MiniLM's tokenizer, by seed name."""
    from lineage.bundled import make_tiny_model

    root = tmp_path_factory.mktemp("tiny-berts")
    return {
        f"s{seed}": make_tiny_model(root / f"s{seed}", num_labels=2, seed=seed, num_layers=1)
        for seed in range(2)
    }


@pytest.fixture(scope="session")
def tiny_family(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny embedding BERT ("base") and a LoRA adapter trained on it for two steps
    with the real `lora` recipe ("adapter": a PEFT directory that needs its base)."""
    from lineage.bundled import make_tiny_model
    from lineage.datasets.shipped import shipped_dataset
    from lineage.recipes import get_recipe

    root = tmp_path_factory.mktemp("tiny-family")
    base = make_tiny_model(root / "base", num_layers=1, seed=3)
    recipe = get_recipe("lora")
    recipe.derive(
        parents=[base],
        params=recipe.validate_params({"steps": 2}),
        data=shipped_dataset("sentiment"),
        out_dir=root / "adapter",
        progress=None,
    )
    return {"base": base, "adapter": root / "adapter"}


def record_results(
    ws: Any, ref: str, passed: bool = True, names: tuple[str, ...] = ("acc",)
) -> None:
    """Declare the tests on the version's model and write their results straight into
    `test_results` (what `lineage test` stores), without running anything."""
    from lineage.graph import schema as t

    version = ws.resolve(ref)
    for name in names:
        ws.graph.upsert_test(
            version.model, name, "accuracy", {"threshold": 0.5, "dataset": "sentiment"}, False
        )
    with ws.graph.engine.begin() as conn:
        for name in names:
            conn.execute(
                t.test_results.insert().values(
                    version_id=version.id,
                    test_name=name,
                    kind="accuracy",
                    declared_on=version.model,
                    metric="accuracy",
                    value=0.9 if passed else 0.1,
                    threshold=0.5,
                    passed=passed,
                    details={},
                    duration_s=0.01,
                    ran_at=datetime.now(UTC),
                )
            )


@contextlib.contextmanager
def mlflow_uri(ws: Any) -> Iterator[None]:
    """MLflow's fluent API (`mlflow.pyfunc.load_model`) pointed at the workspace's store
    for the block, as a user sets `MLFLOW_TRACKING_URI` (lineage itself never does)."""
    from lineage.tracking import tracking_uri

    saved = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri(ws)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved


def alias_runs(ws: Any, name: str) -> list[Any]:
    """The runs mirroring a model's alias history, oldest event first."""
    from lineage.tracking import mlflow_session

    with mlflow_session(ws) as client:
        experiment = client.get_experiment_by_name(f"lineage/{name}")
        runs = client.search_runs(
            [experiment.experiment_id], "tags.`lineage.step` = 'alias'", max_results=1000
        )
    return sorted(runs, key=lambda run: int(run.data.tags["lineage.alias_event_id"]))
