"""Warm task containers (`DockerPool`) against a real engine and the real task image.

One long-lived container per slot, with the one-shot container's isolation; a step
reaches it through its slot's mounts and sees only its own inputs and output folder;
user code, crashes, timeouts and OOM kills replace the container; nothing is left on
the engine once the pool is closed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from lineage.steps.pool.docker import DockerPool
from lineage.steps.pool.placement import CpuPlacement, format_cpuset, parse_cpuset
from lineage.steps.runners import ProcessRunner
from lineage.steps.runners.errors import OutOfMemoryError, StepTimeoutError
from lineage.steps.spec import parse_spec

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]

FINETUNE = {"steps": 2, "batch_size": 4, "seed": 7}


@pytest.fixture
def docker_pool(task_image: Any, run_label: dict[str, str], leftovers: Any) -> Any:
    pool = DockerPool(slots=1, threads=1, image=task_image.tag, memory="2g", labels=run_label)
    yield pool
    pool.close()
    assert not leftovers()  # every worker container removed


def _probe(pool: DockerPool, out: Path, **options: object) -> dict[str, Any]:
    spec = parse_spec({"action": "probe", "out": str(out), **options})
    return pool.run_step(spec, timeout_s=120).result


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_warm_container_is_isolated_and_reused(
    docker_pool: DockerPool, out_root: Path, host_listener: str
) -> None:
    first = _probe(docker_pool, out_root / "a", connect=host_listener)
    second = _probe(docker_pool, out_root / "b")
    assert first["hostname"] == second["hostname"]  # the same container
    assert first["pid"] == second["pid"]  # and the same warm process in it
    for seen in (first, second):
        assert seen["environment"]["in_container"] is True
        assert seen["uid"] != 0 and seen["user"] == "lineage"
        assert seen["root_fs_writable"] is False, seen["root_fs_detail"]
        assert seen["interfaces"] == ["lo"]
        assert seen["out_writable"] and seen["tmp_writable"]
    assert first["network_reachable"] is False, first["network_detail"]
    # Each step sees only its own (empty) input and output folders of the slot.
    assert first["visible"] == {"/in": ["s1"], "/out": ["s1"]}
    assert second["visible"] == {"/in": ["s2"], "/out": ["s2"]}
    # What the step wrote is in its real output folder, owned by the host user.
    assert (out_root / "b" / "result.json").stat().st_uid == os.geteuid()
    assert docker_pool.replaced == 0
    # The slot's container runs on a core of its own, the one the pool reports.
    assert len(first["cores"]) == 1
    assert docker_pool.pinned() == [format_cpuset(first["cores"])]


def test_no_step_sees_another_steps_files(
    docker_pool: DockerPool, out_root: Path, tiny_parent: Path
) -> None:
    littered = _probe(docker_pool, out_root / "a", litter=True)
    tested = docker_pool.run_step(
        parse_spec(
            {
                "action": "test",
                "model": str(tiny_parent),
                "tests": [{"name": "small", "kind": "size", "params": {"max_bytes": 50_000_000}}],
                "out": str(out_root / "t"),
            }
        ),
        timeout_s=120,
    )
    assert tested.result["passed"] is True
    clean = _probe(docker_pool, out_root / "b")
    assert clean["hostname"] == littered["hostname"]
    assert "lineage-probe-litter" not in clean["tmp_entries"]
    assert clean["visible"] == {"/in": ["s3"], "/out": ["s3"]}


def test_user_code_retires_its_container(
    docker_pool: DockerPool, out_root: Path, tiny_parent: Path, shared_dir: Path
) -> None:
    code = shared_dir / "poolcode"
    code.mkdir(exist_ok=True)
    (code / "noop_recipe.py").write_text(
        "def derive(parents, params, data, out_dir):\n    return {'ran': 1.0}\n"
    )
    before = _probe(docker_pool, out_root / "a")
    step = docker_pool.run_step(
        parse_spec(
            {
                "action": "derive",
                "recipe": "noop_recipe:derive",
                "parents": [str(tiny_parent)],
                "code": [str(code)],
                "out": str(out_root / "o"),
            }
        ),
        timeout_s=120,
    )
    assert step.metrics == {"ran": 1.0}
    after = _probe(docker_pool, out_root / "b")
    assert after["hostname"] != before["hostname"] and docker_pool.replaced == 1


def test_timeout_and_oom_replace_the_container(docker_pool: DockerPool, out_root: Path) -> None:
    before = _probe(docker_pool, out_root / "a")
    with pytest.raises(StepTimeoutError, match="timed out after 3 s"):
        docker_pool.run_step(
            parse_spec({"action": "probe", "out": str(out_root / "t"), "sleep_s": 600}),
            timeout_s=3,
        )
    after_timeout = _probe(docker_pool, out_root / "b")
    assert after_timeout["hostname"] != before["hostname"]
    with pytest.raises(OutOfMemoryError, match="ran out of memory in a warm container"):
        docker_pool.run_step(
            parse_spec({"action": "probe", "out": str(out_root / "m"), "allocate_mb": 4096}),
            timeout_s=120,
        )
    after_oom = _probe(docker_pool, out_root / "c")
    assert after_oom["hostname"] not in (before["hostname"], after_timeout["hostname"])
    assert docker_pool.replaced == 2
    # Each replacement took over the slot's cores from the container it replaced.
    assert after_timeout["cores"] == after_oom["cores"] == before["cores"]
    assert docker_pool.pinned() == [format_cpuset(before["cores"])]


def test_pools_on_one_engine_share_out_its_cores(
    docker_engine: Any, task_image: Any, run_label: dict[str, str], leftovers: Any
) -> None:
    cores = int(docker_engine.info()["NCPU"])
    if cores < 2:
        pytest.skip("needs an engine with at least 2 cores")

    def pool(threads: int) -> DockerPool:
        made = DockerPool(slots=1, threads=threads, image=task_image.tag, labels=run_label)
        pools.append(made)
        return made

    pools: list[DockerPool] = []
    try:
        first, rest = pool(1), pool(cores - 1)
        # Each pool's container is pinned to cores the other's is not: every core once.
        taken = [parse_cpuset(cpuset) for made in (first, rest) for cpuset in made.pinned()]
        assert sorted(core for cpuset in taken for core in cpuset) == list(range(cores))
        for container in leftovers():
            held = parse_cpuset(container.attrs["HostConfig"]["CpusetCpus"])
            assert held in taken
        # No core is left for a third pool: the kernel places its container.
        assert pool(1).pinned() == []
    finally:
        for made in pools:
            made.close()
    assert not leftovers()


def test_cores_the_engine_refuses_leave_the_workers_unpinned(
    docker_engine: Any, task_image: Any, run_label: dict[str, str], leftovers: Any, out_root: Path
) -> None:
    pool = DockerPool(slots=1, threads=1, prestart=False, image=task_image.tag, labels=run_label)
    try:
        # As on an engine whose cpuset is narrower than its core count: the set the
        # placement offers (core 4095) is refused, and the worker starts unpinned.
        pool._placement = CpuPlacement(engine_cores=4096, taken=set(range(4095)), slots=1, cpus=1)
        seen = _probe(pool, out_root / "a")
        assert len(seen["cores"]) == int(docker_engine.info()["NCPU"])
        assert pool.pinned() == []
        assert pool.replaced == 0
    finally:
        pool.close()
    assert not leftovers()


def test_warm_container_derive_is_bit_identical_to_a_subprocess(
    docker_pool: DockerPool, out_root: Path, tiny_parent: Path, tiny_data: Path, task_image: Any
) -> None:
    spec = {
        "action": "derive",
        "recipe": "finetune",
        "params": FINETUNE,
        "parents": [str(tiny_parent)],
        "data": str(tiny_data),
        "tests": [{"name": "small", "kind": "size", "params": {"max_bytes": 50_000_000}}],
    }
    in_docker = docker_pool.run_step(
        parse_spec({**spec, "out": str(out_root / "d")}), timeout_s=300
    )
    in_process = ProcessRunner(threads=1).run_step(
        parse_spec({**spec, "out": str(out_root / "p")}), timeout_s=300
    )
    assert in_docker.model_dir is not None and in_process.model_dir is not None
    assert _files(in_docker.model_dir) == _files(in_process.model_dir)
    assert in_docker.result["threads"] == in_process.result["threads"] == 1
    # The node's tests ran in the same step, on the model it had just made.
    assert [t["name"] for t in in_docker.result["tests"]] == ["small"]
    assert in_docker.result["tests"][0]["value"] == in_process.result["tests"][0]["value"]
    assert in_docker.image_digest == task_image.image_id
