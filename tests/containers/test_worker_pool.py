"""Warm worker pools of subprocesses: reuse, replacement, leftovers, thread counts.

No engine needed; the docker pool's own tests are in `test_docker_pool.py`.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

import pytest

from lineage.steps.pool import ProcessPool, step_threads
from lineage.steps.runners import ProcessRunner
from lineage.steps.runners.errors import StepFailedError, StepTimeoutError
from lineage.steps.spec import parse_spec

pytestmark = pytest.mark.timeout(300)

FINETUNE = {"steps": 2, "batch_size": 4, "seed": 7}


def _probe(pool: ProcessPool, out: Path, **options: object) -> dict[str, object]:
    spec = parse_spec({"action": "probe", "out": str(out), **options})
    return pool.run_step(spec, timeout_s=60).result


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture
def pool() -> ProcessPool:
    with ProcessPool(slots=1, threads=1) as pool:
        yield pool


def test_a_worker_takes_one_step_after_another(pool: ProcessPool, tmp_path: Path) -> None:
    first = _probe(pool, tmp_path / "a")
    second = _probe(pool, tmp_path / "b")
    assert first["pid"] == second["pid"]  # the same warm process
    assert pool.replaced == 0
    assert (tmp_path / "a" / "result.json").is_file() and (tmp_path / "b" / "result.json").is_file()


def test_a_crashed_worker_is_replaced(pool: ProcessPool, tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "crash.py").write_text(
        "import os, signal\n"
        "def derive(parents, params, data, out_dir):\n"
        "    os.kill(os.getpid(), signal.SIGSEGV)\n"
    )
    parent = tmp_path / "parent"
    parent.mkdir()
    before = _probe(pool, tmp_path / "a")
    with pytest.raises(StepFailedError, match="killed by SIGSEGV"):
        pool.run_step(
            parse_spec(
                {
                    "action": "derive",
                    "recipe": "crash:derive",
                    "parents": [str(parent)],
                    "code": [str(code)],
                    "out": str(tmp_path / "o"),
                }
            ),
            timeout_s=60,
        )
    after = _probe(pool, tmp_path / "b")
    assert after["pid"] != before["pid"] and pool.replaced == 1


def test_a_timed_out_worker_is_replaced(pool: ProcessPool, tmp_path: Path) -> None:
    before = _probe(pool, tmp_path / "a")
    started = time.monotonic()
    with pytest.raises(StepTimeoutError, match="timed out after 2 s"):
        pool.run_step(
            parse_spec({"action": "probe", "out": str(tmp_path / "o"), "sleep_s": 600}),
            timeout_s=2,
        )
    assert time.monotonic() - started < 20
    after = _probe(pool, tmp_path / "b")
    assert after["pid"] != before["pid"] and pool.replaced == 1


def test_a_step_never_sees_what_the_previous_one_left(pool: ProcessPool, tmp_path: Path) -> None:
    littered = _probe(pool, tmp_path / "a", litter=True)
    assert "lineage-probe-litter" not in littered["tmp_entries"]  # written after the look
    clean = _probe(pool, tmp_path / "b")
    assert clean["pid"] == littered["pid"]  # the same worker, its temp folder emptied
    assert clean["tmp_entries"] == littered["tmp_entries"]
    assert "lineage-probe-litter" not in clean["tmp_entries"]


def test_user_code_is_imported_afresh_by_the_next_step(pool: ProcessPool, tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    parent = tmp_path / "parent"
    parent.mkdir()

    def run(version: int, out: str) -> dict[str, float]:
        (code / "versioned.py").write_text(
            f"def derive(parents, params, data, out_dir):\n    return {{'version': {version}}}\n"
        )
        spec = {
            "action": "derive",
            "recipe": "versioned:derive",
            "parents": [str(parent)],
            "code": [str(code)],
            "out": str(tmp_path / out),
        }
        return pool.run_step(parse_spec(spec), timeout_s=60).metrics

    assert run(1, "a") == {"version": 1.0}
    assert run(2, "b") == {"version": 2.0}  # the edited module, not the cached one
    assert pool.replaced == 0


@pytest.mark.parametrize("fork", [True, False], ids=["forked", "spawned"])
def test_thread_count_is_fixed_recorded_and_bit_identical(
    fork: bool, tiny_parent: Path, tiny_data: Path, tmp_path: Path
) -> None:
    spec = {
        "action": "derive",
        "recipe": "finetune",
        "params": FINETUNE,
        "parents": [str(tiny_parent)],
        "data": str(tiny_data),
    }
    with ProcessPool(slots=1, threads=1, fork=fork) as pool:
        warm = pool.run_step(parse_spec({**spec, "out": str(tmp_path / "w")}), timeout_s=300)
    cold = ProcessRunner(threads=1).run_step(
        parse_spec({**spec, "out": str(tmp_path / "c")}), timeout_s=300
    )
    assert warm.result["threads"] == cold.result["threads"] == 1
    assert warm.model_dir is not None and cold.model_dir is not None
    assert _files(warm.model_dir) == _files(cold.model_dir)
    assert warm.loss_curve == cold.loss_curve
    # No oversubscription: the slots' threads together fit the cores.
    assert step_threads(2, cores=2) == 1 and step_threads(4, cores=16) == 2


def test_a_free_worker_goes_to_the_highest_priority_first(
    pool: ProcessPool, tmp_path: Path
) -> None:
    import threading

    _probe(pool, tmp_path / "warm")  # the worker is up
    finished: list[str] = []

    def run(name: str, priority: float, sleep_s: float = 0.0) -> None:
        with pool.prioritized(priority):
            _probe(pool, tmp_path / name, sleep_s=sleep_s)
        finished.append(name)

    busy = threading.Thread(target=run, args=("busy", 0.0, 1.5))
    busy.start()
    time.sleep(0.3)  # the only worker is taken
    low = threading.Thread(target=run, args=("low", 1.0))
    low.start()
    time.sleep(0.3)  # `low` waits first...
    high = threading.Thread(target=run, args=("high", 5.0))
    high.start()
    for thread in (busy, low, high):
        thread.join(timeout=60)
    assert finished == ["busy", "high", "low"]  # ...but `high` goes first


def test_an_announced_step_of_higher_priority_is_waited_for(
    pool: ProcessPool, tmp_path: Path
) -> None:
    """A cascade announces its ready nodes in priority order before their tasks start:
    a lower-priority step that reaches the free worker first leaves it to the
    announced one; an announcement that never comes lapses."""
    import threading

    _probe(pool, tmp_path / "warm")  # the worker is up, and free
    finished: list[str] = []

    def run(name: str, priority: float, key: str | None = None) -> None:
        with pool.prioritized(priority, key):
            _probe(pool, tmp_path / name)
        finished.append(name)

    pool.expect("cascade/high", 5.0)
    low = threading.Thread(target=run, args=("low", 1.0))
    low.start()
    time.sleep(0.3)  # `low` asked first, for a free worker...
    assert not finished
    high = threading.Thread(target=run, args=("high", 5.0, "cascade/high"))
    high.start()
    for thread in (low, high):
        thread.join(timeout=60)
    assert finished == ["high", "low"]  # ...which went to the announced step

    pool.expect("cascade/never", 9.0)  # its task never comes (it failed, say)
    run("alone", 1.0)
    assert finished[-1] == "alone"


def _parent_and_session(pid: int) -> tuple[int, int]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1]), int(fields[3])  # ppid, session id


def test_workers_are_forked_from_one_zygote(tmp_path: Path) -> None:
    with ProcessPool(slots=2, threads=1) as pool:
        zygote = pool.zygote()
        assert zygote is not None
        pids = {int(_probe(pool, tmp_path / name)["pid"]) for name in ("a", "b")}
        zygote_pid = zygote.process.pid
        children = Path(f"/proc/{zygote_pid}/task/{zygote_pid}/children").read_text().split()
        assert pids <= {int(pid) for pid in children} and len(children) == 2
        for pid in pids:
            # Forked by the zygote, each in a session of its own (a timeout kills it all).
            assert _parent_and_session(pid) == (zygote_pid, pid)


def test_without_its_zygote_the_pool_starts_subprocesses(pool: ProcessPool, tmp_path: Path) -> None:
    first = _probe(pool, tmp_path / "a")
    zygote = pool.zygote()
    assert zygote is not None
    os.kill(zygote.process.pid, signal.SIGKILL)
    zygote.process.wait()
    # The worker it forked goes on; when it ends, its end is seen without the zygote.
    assert _probe(pool, tmp_path / "b")["pid"] == first["pid"]
    with pytest.raises(StepTimeoutError):
        pool.run_step(
            parse_spec({"action": "probe", "out": str(tmp_path / "o"), "sleep_s": 600}),
            timeout_s=2,
        )
    replacement = _probe(pool, tmp_path / "c")
    assert replacement["pid"] != first["pid"] and pool.replaced == 1
    assert _parent_and_session(int(replacement["pid"]))[0] == os.getpid()  # a subprocess


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _logger() -> tuple[logging.Logger, _Lines]:
    logger = logging.Logger("test-step-log", logging.INFO)
    handler = _Lines()
    logger.addHandler(handler)
    return logger, handler


def test_a_step_started_early_is_taken_by_the_same_step(pool: ProcessPool, tmp_path: Path) -> None:
    early = tmp_path / "early"
    pool.run_early(parse_spec({"action": "probe", "out": str(early / "step"), "sleep_s": 0.5}))
    logger, seen = _logger()
    asked = tmp_path / "asked"
    result = pool.run_step(
        parse_spec({"action": "probe", "out": str(asked), "sleep_s": 0.5}), logger=logger
    )
    assert pool.early_taken == 1
    # Its output moved to the folder the caller named; its log went to the caller's.
    assert result.out_dir == asked and (asked / "result.json").is_file()
    assert list((early / "step").iterdir()) == []
    assert any("step probe starting" in line for line in seen.lines)
    assert any("step probe done" in line for line in seen.lines)
    pool.forget_early(early)


def test_a_different_step_does_not_take_an_early_one(pool: ProcessPool, tmp_path: Path) -> None:
    early = tmp_path / "early"
    pool.run_early(parse_spec({"action": "probe", "out": str(early / "step"), "sleep_s": 0.3}))
    other = _probe(pool, tmp_path / "other", sleep_s=0.1)  # not the same step: its own run
    assert pool.early_taken == 0 and other["pid"]
    (forgotten,) = pool.forget_early(early)  # nobody took it
    forgotten.done.wait(timeout=60)
    assert (early / "step" / "result.json").is_file()
    # Forgotten: the same step now runs afresh.
    _probe(pool, tmp_path / "again", sleep_s=0.3)
    assert pool.early_taken == 0


def test_an_early_step_failure_reaches_the_step_that_takes_it(
    pool: ProcessPool, tmp_path: Path
) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "fails.py").write_text(
        "def derive(parents, params, data, out_dir):\n    raise RuntimeError('no good')\n"
    )
    parent = tmp_path / "parent"
    parent.mkdir()
    spec = {
        "action": "derive",
        "recipe": "fails:derive",
        "parents": [str(parent)],
        "code": [str(code)],
    }
    pool.run_early(parse_spec({**spec, "out": str(tmp_path / "early" / "step")}))
    with pytest.raises(StepFailedError, match="no good"):
        pool.run_step(parse_spec({**spec, "out": str(tmp_path / "asked")}), timeout_s=60)
    assert pool.early_taken == 1
    # Taken once: a retry runs the step itself.
    with pytest.raises(StepFailedError, match="no good"):
        pool.run_step(parse_spec({**spec, "out": str(tmp_path / "retry")}), timeout_s=60)
    assert pool.early_taken == 1
