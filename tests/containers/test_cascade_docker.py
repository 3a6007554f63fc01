"""`lineage cascade --runner docker` end to end: every derive step of a small family runs
in the task container, the host commits the outputs, and the image digest is each new
version's provenance.

The family uses built-in deterministic recipes on tiny BERTs (an equal-weight merge, then
a quantization to float16), so two containers do the whole cascade in seconds.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Before anything imports Prefect: nothing may leak into ~/.prefect, and the ephemeral
# server must not try to reach the internet.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="lineage-test-prefect-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY", "false")

from lineage.ops.add import add, commit
from lineage.workspace import Workspace

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]


@pytest.fixture(scope="session", autouse=True)
def _quiet_prefect_at_exit() -> Iterator[None]:
    """Prefect stops its ephemeral server from an exit hook and logs that to streams
    pytest has closed by then; silence its logger once these tests are over."""
    yield
    logging.getLogger("prefect").disabled = True


@pytest.fixture
def tiny_family(tmp_path: Path) -> Workspace:
    """base@1 and side@1 (tiny BERTs) and, made by built-in recipes in this process:

        base ──┬── mix ── mix-half     (mix: merge of base and side; then float16)
        side ──┘

    with a size test on base (inherited by both), then base@2 committed.
    """
    from lineage.bundled import make_tiny_model
    from lineage.ops.derive import add_from_recipe
    from lineage.ops.tests import declare_model_test

    ws = Workspace.init(tmp_path / "ws")
    add(ws, "base", source=make_tiny_model(tmp_path / "base1", num_labels=2, seed=0))
    add(ws, "side", source=make_tiny_model(tmp_path / "side1", num_labels=2, seed=1))
    add_from_recipe(ws, "mix", recipe_id="merge", parents=["base@1", "side@1"])
    add_from_recipe(
        ws, "mix-half", recipe_id="quantize", parents=["mix@1"], params={"dtype": "float16"}
    )
    declare_model_test(ws, "base", "small-enough", "size", {"max_bytes": 50_000_000})
    commit(ws, "base", source=make_tiny_model(tmp_path / "base2", num_labels=2, seed=2))
    return ws


def test_cascade_with_the_docker_runner(
    tiny_family: Workspace, task_image: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from lineage.cli.main import app

    monkeypatch.delenv("PREFECT_API_URL", raising=False)  # Prefect's ephemeral mode
    # The image built for this source tree, by tag: `latest` may move under a
    # concurrent build of another checkout.
    monkeypatch.setenv("LINEAGE_TASK_IMAGE", task_image.tag)
    result = CliRunner().invoke(
        app,
        [
            "-w",
            str(tiny_family.root),
            "cascade",
            "base@2",
            "--runner",
            "docker",
            "--no-track",
            "--retries",
            "0",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert {n["model"]: n["status"] for n in summary["nodes"]} == {
        "mix": "promoted",
        "mix-half": "promoted",
    }, summary["nodes"]

    ws = Workspace.open(tiny_family.root)
    expected_parents = {"mix": ["base@2", "side@1"], "mix-half": ["mix@2"]}
    for model, parents in expected_parents.items():
        version = ws.resolve(f"{model}@2")
        # Committed by the host from the container's output, with the cascade's edges.
        assert [p.ref for p in version.derivation_parents] == parents
        assert version.recipe_id == ws.resolve(f"{model}@1").recipe_id
        # Provenance: exactly the image the step ran in.
        assert version.image_digest == task_image.image_id, model
        assert version.image_digest.startswith("sha256:")
        # The inherited test ran on the new version and passed.
        results = ws.graph.latest_results(version.id)
        assert results["small-enough"].passed, results
        assert "champion" in version.aliases
    # What the container wrote is what was committed: float16 out of a float32 parent.
    biggest = max((t for _, t in ws.manifest("mix-half@2").tensors()), key=lambda t: t.nbytes)
    assert biggest.dtype == "F16", biggest
    assert max(t.nbytes for _, t in ws.manifest("mix@2").tensors()) == 2 * biggest.nbytes
    # The versions made in this process earlier record no image.
    assert ws.resolve("mix-half@1").image_digest is None
