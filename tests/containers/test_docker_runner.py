"""The docker runner against a real engine and the real task image.

Checked from inside the container (probe step): no network, non-root, read-only root.
Checked from outside: a derive in the container is bit-identical to the same derive in
a subprocess; the image digest is reported; every fault gives its own clear
`RunnerError` and leaves no container behind.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from lineage.errors import RunnerError
from lineage.steps.engine import EngineUnavailableError
from lineage.steps.runners import DockerRunner, ProcessRunner
from lineage.steps.runners.errors import (
    ImageNotFoundError,
    NetworkAccessError,
    OutOfMemoryError,
    StepFailedError,
    StepTimeoutError,
)
from lineage.steps.spec import parse_spec

pytestmark = pytest.mark.docker

FINETUNE = {"steps": 2, "batch_size": 4, "seed": 7}


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_probe_inside_container_is_isolated(
    docker_runner: DockerRunner, out_root: Path, host_listener: str, leftovers: Any
) -> None:
    result = docker_runner.run_step(
        parse_spec({"action": "probe", "out": str(out_root / "probe"), "connect": host_listener}),
        timeout_s=60,
    )
    seen = result.result
    assert seen["environment"]["in_container"] is True
    assert seen["uid"] != 0 and seen["user"] == "lineage"
    assert seen["root_fs_writable"] is False, seen["root_fs_detail"]
    assert "Read-only file system" in seen["root_fs_detail"]
    assert seen["tmp_writable"] and seen["out_writable"]
    assert seen["interfaces"] == ["lo"]
    assert seen["network_reachable"] is False, seen["network_detail"]
    # The output came back owned by the host user, not the container's uid.
    assert (out_root / "probe" / "result.json").stat().st_uid == os.geteuid()
    assert not leftovers()


def test_probe_control_with_network_reaches_the_host(
    docker_runner: DockerRunner, out_root: Path, host_listener: str
) -> None:
    # The same probe with a network does connect: the isolation test above is not vacuous.
    docker_runner.network = True
    result = docker_runner.run_step(
        parse_spec({"action": "probe", "out": str(out_root / "probe"), "connect": host_listener}),
        timeout_s=60,
    )
    assert result.result["network_reachable"] is True, result.result["network_detail"]


def test_derive_in_container_is_bit_identical_to_process(
    docker_runner: DockerRunner,
    out_root: Path,
    tiny_parent: Path,
    tiny_data: Path,
    task_image: Any,
) -> None:
    spec = {
        "action": "derive",
        "recipe": "finetune",
        "params": FINETUNE,
        "parents": [str(tiny_parent)],
        "data": str(tiny_data),
    }
    in_process = ProcessRunner().run_step(
        parse_spec({**spec, "out": str(out_root / "p")}), timeout_s=300
    )
    in_docker = docker_runner.run_step(
        parse_spec({**spec, "out": str(out_root / "d")}), timeout_s=300
    )

    assert in_process.model_dir is not None and in_docker.model_dir is not None
    process_files, docker_files = _files(in_process.model_dir), _files(in_docker.model_dir)
    assert "model.safetensors" in process_files
    assert process_files == docker_files
    assert in_docker.result["files"] == in_process.result["files"]
    assert in_docker.loss_curve == in_process.loss_curve and len(in_docker.loss_curve) >= 1
    assert in_docker.result["environment"]["in_container"] is True
    assert in_process.result["environment"]["in_container"] is False
    # Provenance: the digest of exactly the image that ran.
    assert in_docker.image_digest == task_image.image_id
    assert in_docker.image_digest.startswith("sha256:")
    assert in_process.image_digest is None


def test_bad_params_fail_with_the_recipe_error(
    docker_runner: DockerRunner, out_root: Path, tiny_parent: Path
) -> None:
    with pytest.raises(StepFailedError, match=r"RecipeError: .*steps") as info:
        docker_runner.run_step(
            parse_spec(
                {
                    "action": "derive",
                    "recipe": "finetune",
                    "params": {"steps": -1},
                    "parents": [str(tiny_parent)],
                    "data": None,
                    "out": str(out_root / "o"),
                }
            ),
            timeout_s=120,
        )
    assert info.value.step_exit_code == 9  # RecipeError.exit_code


def test_missing_image(out_root: Path, run_label: dict[str, str], leftovers: Any) -> None:
    runner = DockerRunner("lineage-task:no-such-tag", labels=run_label)
    with pytest.raises(ImageNotFoundError, match=r"lineage-task:no-such-tag not found.*make image"):
        runner.run_step(parse_spec({"action": "probe", "out": str(out_root / "o")}))
    assert not leftovers()


def test_dead_engine(out_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:9")  # discard port: nothing listens
    runner = DockerRunner()
    started = time.monotonic()
    with pytest.raises(EngineUnavailableError, match=r"not reachable at tcp://127.0.0.1:9"):
        runner.run_step(parse_spec({"action": "probe", "out": str(out_root / "o")}))
    assert time.monotonic() - started < 15
    assert issubclass(EngineUnavailableError, RunnerError)


def test_memory_limit_exceeded(docker_runner: DockerRunner, out_root: Path, leftovers: Any) -> None:
    docker_runner.memory = 96 << 20
    with pytest.raises(OutOfMemoryError, match=r"exceeded its memory limit of 96 MiB"):
        docker_runner.run_step(
            parse_spec({"action": "probe", "out": str(out_root / "o"), "allocate_mb": 512}),
            timeout_s=120,
        )
    assert not leftovers()


def test_network_attempt_by_a_recipe(
    docker_runner: DockerRunner,
    out_root: Path,
    tiny_parent: Path,
    shared_dir: Path,
    leftovers: Any,
) -> None:
    # A user recipe (module:function, mounted as code) that phones home.
    code = shared_dir / "netcode"
    code.mkdir(exist_ok=True)
    (code / "phone_home.py").write_text(
        "import urllib.request\n"
        "def derive(parents, params, data, out_dir):\n"
        "    urllib.request.urlopen('http://example.com/upload', timeout=5)\n"
    )
    # Even with a network attached, the step's own policy refuses and reports it.
    docker_runner.network = True
    with pytest.raises(NetworkAccessError, match=r"network connection to example\.com:80"):
        docker_runner.run_step(
            parse_spec(
                {
                    "action": "derive",
                    "recipe": "phone_home:derive",
                    "params": {},
                    "parents": [str(tiny_parent)],
                    "code": [str(code)],
                    "out": str(out_root / "o"),
                }
            ),
            timeout_s=120,
        )
    assert not leftovers()


def test_network_attempt_without_network(
    docker_runner: DockerRunner, out_root: Path, host_listener: str
) -> None:
    with pytest.raises(NetworkAccessError, match="network"):
        docker_runner.run_step(
            parse_spec(
                {
                    "action": "probe",
                    "out": str(out_root / "o"),
                    "connect": host_listener,
                    "guard": True,
                }
            ),
            timeout_s=60,
        )


def test_hanging_step_times_out(
    docker_runner: DockerRunner, out_root: Path, leftovers: Any
) -> None:
    started = time.monotonic()
    with pytest.raises(StepTimeoutError, match=r"timed out after 3 s"):
        docker_runner.run_step(
            parse_spec({"action": "probe", "out": str(out_root / "o"), "sleep_s": 600}), timeout_s=3
        )
    assert time.monotonic() - started < 30
    assert not leftovers()


def test_output_folder_must_be_empty(docker_runner: DockerRunner, out_root: Path) -> None:
    (out_root / "o").mkdir()
    (out_root / "o" / "result.json").write_text("{}")
    with pytest.raises(RunnerError, match="not empty"):
        docker_runner.run_step(parse_spec({"action": "probe", "out": str(out_root / "o")}))


def test_model_tests_run_in_container_like_in_process(
    docker_runner: DockerRunner, out_root: Path, tiny_parent: Path, tiny_data: Path
) -> None:
    spec = {
        "action": "test",
        "model": str(tiny_parent),
        "data": str(tiny_data),
        "tests": [
            {"name": "small", "kind": "size", "params": {"max_bytes": 50_000_000}},
            {"name": "acc", "kind": "accuracy", "params": {"threshold": 0.0}},
        ],
    }
    in_docker = docker_runner.run_step(
        parse_spec({**spec, "out": str(out_root / "d")}), timeout_s=300
    )
    in_process = ProcessRunner().run_step(
        parse_spec({**spec, "out": str(out_root / "p")}), timeout_s=300
    )
    assert in_docker.result["passed"] is True
    assert [t["name"] for t in in_docker.result["tests"]] == ["small", "acc"]
    docker_values = [t["value"] for t in in_docker.result["tests"]]
    assert docker_values == [t["value"] for t in in_process.result["tests"]]
