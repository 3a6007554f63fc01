"""Warm workers and the pool that lends them to steps.

A `Worker` is the host's handle on one warm worker (`lineage.steps.worker`): a
subprocess or a container that has imported torch, transformers and PEFT once and runs
one step after another. A `WorkerPool` is a `Runner`: it keeps one worker per slot,
lends a free one to each step, and replaces a worker that crashed, timed out, ran out
of memory or ran user code (the worker retires itself then), starting the replacement
at once so the next step finds it warm.

Every step of a pool gets the same fixed thread count (`step_threads`: `slots` steps
at once must not oversubscribe the cores), written into its spec, so it is what the
step's result, and the version's provenance, record.
"""

from __future__ import annotations

import atexit
import contextlib
import heapq
import itertools
import json
import logging
import os
import shutil
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from lineage.steps.runners.base import (
    LogTail,
    Runner,
    StepLogger,
    StepResult,
    check_spec,
    read_outcome,
    step_logger,
)
from lineage.steps.runners.errors import OutOfMemoryError, RunnerError, StepTimeoutError
from lineage.steps.spec import StepSpec
from lineage.steps.worker import (
    END_OF_STEP,
    READY_FILE,
    request_path,
    response_path,
    write_json_atomically,
)

log = logging.getLogger("lineage.steps.pool")

#: How long a new worker may take to import torch & co. (minutes on a loaded machine).
READY_TIMEOUT_S = 300.0
#: Host-side poll of the response file; small next to any step.
POLL_S = 0.01
#: How often a waiting host checks that the worker is still alive.
LIVENESS_S = 0.25
#: How long a step announced with `WorkerPool.expect` holds back steps of lower
#: priority: enough for its task to reach the pool (milliseconds, or a shared parent
#: checkout), short enough that a free worker does not idle long if it never does.
EXPECT_S = 1.0


def step_threads(slots: int, cores: int | None = None) -> int:
    """Threads per step when `slots` steps run at once on `cores` cores.

    `$LINEAGE_DERIVE_THREADS` when set (the explicit determinism knob); else the
    determinism default, lowered so that the slots together use at most the cores.
    The same count gives the same bytes, so it is recorded with every version.

    >>> step_threads(2, cores=2), step_threads(1, cores=16), step_threads(8, cores=4)
    (1, 2, 1)
    """
    from lineage.recipes.threads import DERIVE_THREADS

    if os.environ.get("LINEAGE_DERIVE_THREADS"):
        return DERIVE_THREADS
    cores = cores or os.cpu_count() or 1
    return max(1, min(DERIVE_THREADS, cores // max(1, slots)))


@dataclass
class Ending:
    """How a step ended in a worker, as seen from the host."""

    exit_code: int
    reusable: bool  # the worker can take another step
    oom: bool = False


@dataclass
class EarlyStep:
    """A step started before anyone asked for its result (`WorkerPool.run_early`)."""

    spec: StepSpec  # as checked: absolute output folder, thread count
    records: list[logging.LogRecord]  # its output, logged when the result is taken
    done: threading.Event
    began: float | None = None  # time.monotonic() when a worker took it
    result: StepResult | None = None
    error: BaseException | None = None


def _step_key(spec: StepSpec) -> str:
    """What makes two steps the same step: everything but the output folder."""
    fields = spec.to_json()
    fields.pop("out", None)
    return json.dumps(fields, sort_keys=True, default=str)


class _Keep(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__(logging.DEBUG)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _keeping_logger(records: list[logging.LogRecord]) -> logging.Logger:
    """A logger of its own (not in the logging tree) that keeps what it is given."""
    logger = logging.Logger("lineage.steps.early", logging.INFO)
    logger.propagate = False
    logger.addHandler(_Keep(records))
    return logger


class Worker(ABC):
    """The host's handle on one warm worker (see the module docstring).

    Subclasses start the worker (`launch`), say whether it lives (`exit_code`), stop it,
    and move a step's paths in and out of the worker (`stage`, `unstage`); the request,
    the wait and the log routing are shared here.
    """

    where: ClassVar[str]  # for messages: "in a warm subprocess"

    def __init__(self, cpu_share: int) -> None:
        self.cpu_share = cpu_share
        self.control: Path | None = None  # set by `launch`
        self.steps = 0
        self.import_seconds: float | None = None
        self._tail: LogTail | None = None
        self._partial = ""
        self._between_steps: deque[str] = deque(maxlen=5)  # output outside any step
        self._step_ended = threading.Event()
        self._killed = False

    # ------------------------------------------------------------------ subclass part

    @abstractmethod
    def launch(self) -> None:
        """Start the worker; return at once (it imports in the background)."""

    @abstractmethod
    def exit_code(self) -> int | None:
        """None while the worker runs, else how it ended."""

    @abstractmethod
    def kill(self) -> None:
        """End the worker now (a timeout)."""

    @abstractmethod
    def stop(self) -> None:
        """End the worker politely and remove what it used on the host."""

    def stage(self, spec: StepSpec, seq: int) -> StepSpec:
        """The spec as the worker sees it (a container maps paths); default: as is."""
        return spec

    def unstage(self, spec: StepSpec, seq: int) -> None:  # noqa: B027 (optional hook)
        """After the step: bring its outputs to the host's output folder, clean up."""

    def out_of_memory(self) -> bool:
        """Whether the worker's end was the kernel's OOM killer."""
        return False

    def start_failure_hint(self, exit_code: int) -> str:
        """What to do when a worker exits before it is ready (default: nothing)."""
        return ""

    # ------------------------------------------------------------------ shared part

    def feed(self, chunk: str) -> None:
        """Route worker output (any piece of it) line by line: to the current step's
        log, or to the pool's debug log between steps."""
        *lines, self._partial = (self._partial + chunk).split("\n")
        for line in lines:
            if line.startswith(END_OF_STEP):
                self._step_ended.set()
                continue
            tail = self._tail
            if tail is not None:
                tail.feed(line + "\n")
            elif line.strip():
                self._between_steps.append(line.rstrip())
                log.debug("worker: %s", line.rstrip())

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Block until the worker has imported everything (or fail clearly)."""
        assert self.control is not None
        ready = self.control / READY_FILE
        deadline = time.monotonic() + timeout_s
        while not ready.exists():
            code = self.exit_code()
            if code is not None:
                time.sleep(0.2)  # its last words may still be in the pipe
                said = self._between_steps[-1] if self._between_steps else "no output"
                hint = self.start_failure_hint(code)
                raise RunnerError(
                    f"a warm worker {self.where} exited ({code}) while starting: {said}"
                    + (f"; {hint}" if hint else "")
                )
            if time.monotonic() > deadline:
                self.kill()
                raise RunnerError(f"a warm worker {self.where} was not ready after {timeout_s:g} s")
            time.sleep(POLL_S * 5)
        if self.import_seconds is None:
            with contextlib.suppress(OSError, ValueError):
                self.import_seconds = float(json.loads(ready.read_text())["import_seconds"])

    def run(self, spec: StepSpec, timeout_s: float | None, tail: LogTail) -> Ending:
        """Run one (checked) step; its result or error file ends up in `spec.out`."""
        assert self.control is not None
        seq = self.steps + 1
        inside = self.stage(spec, seq)
        self._step_ended.clear()
        self._tail = tail
        try:
            write_json_atomically(request_path(self.control, seq), {"spec": inside.to_json()})
            self.steps = seq  # the worker now waits for the next number
            ending = self._await(seq, timeout_s, spec.action)
            # Output printed just before the response may still be in the pipe.
            self._step_ended.wait(timeout=2.0)
        finally:
            self._tail = None
            tail.close()
            self.unstage(spec, seq)
        return ending

    def _await(self, seq: int, timeout_s: float | None, action: str) -> Ending:
        assert self.control is not None
        path = response_path(self.control, seq)
        started = time.monotonic()
        checked = started
        while True:
            if path.exists():
                reply = json.loads(path.read_text())
                path.unlink()
                return Ending(int(reply["exit_code"]), reusable=not reply.get("retire"))
            now = time.monotonic()
            if timeout_s is not None and now - started > timeout_s:
                self._killed = True
                self.kill()
                raise StepTimeoutError(
                    f"{action} step timed out after {timeout_s:g} s; its worker was killed "
                    "(a fresh one replaces it)"
                )
            if now - checked > LIVENESS_S:
                checked = now
                code = self.exit_code()
                if code is not None and not path.exists():
                    self._step_ended.set()  # nothing more will come
                    return Ending(code, reusable=False, oom=self.out_of_memory())
            time.sleep(POLL_S)


class WorkerPool(Runner):
    """A runner that keeps `slots` warm workers and lends one to each step.

    Args:
        slots: how many steps may run at once (one worker each).
        threads: torch threads per step (default `step_threads(slots)`).
        prestart: start every slot's worker now, in the background.

    Subclasses set `name` and `new_worker`.
    """

    def __init__(self, slots: int = 1, *, threads: int | None = None, prestart: bool = True):
        if slots < 1:
            raise RunnerError(f"a worker pool needs at least one slot (got {slots})")
        self.slots = slots
        self._threads = threads
        self._free: list[Worker | None] = [None] * slots
        self._cond = threading.Condition()
        self._closed = False
        self._waits = threading.local()
        self._waiting: list[tuple[float, int]] = []  # (-priority, ticket) of waiting threads
        # Steps announced but not yet asked for (`expect`): key -> (priority, deadline).
        self._expected: dict[str, tuple[float, float]] = {}
        self._tickets = itertools.count()
        self.replaced = 0  # workers started to replace one that could not go on
        self._early: dict[str, EarlyStep] = {}  # started early, result not yet taken
        self.early_taken = 0  # steps whose early run's result a `run_step` took
        self._early_open = True  # until `close_early`
        if prestart:
            self._prestart()

    def _prestart(self) -> None:
        """Start the workers: at once as many as there are cores (importing torch is
        CPU-bound: more at once only slows the first), then the others one by one,
        each when the one before is ready; all at once if they share one import."""
        cores = os.cpu_count() or 1
        at_once = self.slots if self.imports_once() else min(self.slots, cores)
        first = [self._start() for _ in range(at_once)]
        self._free = [*first, *([None] * (self.slots - at_once))]
        if at_once < self.slots:
            threading.Thread(
                target=self._start_the_rest, args=(first[-1],), name="pool-start", daemon=True
            ).start()

    def _start_the_rest(self, previous: Worker) -> None:
        for _ in range(self.slots - len([w for w in self._free if w is not None])):
            with contextlib.suppress(RunnerError):
                previous.wait_ready()
            with self._cond:
                if self._closed or None not in self._free:
                    return  # closed, or a step already started the slot's worker
                previous = self._start()
                self._free[self._free.index(None)] = previous

    @property
    def threads(self) -> int:
        """Torch threads of every step (`step_threads(slots)` unless given); worked out
        on first use, since the default comes from `lineage.recipes` (torch)."""
        if self._threads is None:
            self._threads = step_threads(self.slots)
        return self._threads

    @property
    def cpu_share(self) -> int:
        """A slot's share of the cores: what a worker's libraries may size their own
        thread pools to, and a container's CPU limit (at least `threads`)."""
        return self._threads or max(1, (os.cpu_count() or 1) // self.slots)

    def pinned(self) -> list[str]:
        """The core sets the workers are pinned to now (none: the kernel places them)."""
        return []

    def imports_once(self) -> bool:
        """Whether the workers share one import of torch & co. (forked from a process
        that made it): then starting them all at once costs no more than starting one."""
        return False

    @abstractmethod
    def new_worker(self) -> Worker:
        """A worker of this pool's kind, not yet launched."""

    def _start(self) -> Worker:
        worker = self.new_worker()
        worker.launch()
        return worker

    # ------------------------------------------------------------------ slots

    def _acquire(self) -> Worker:
        """A free worker for the calling thread; among threads that wait, the one with
        the highest priority (`prioritized`) goes first, then the earliest; a step of
        higher priority that was announced (`expect`) and has not asked yet is waited
        for (at most `EXPECT_S`)."""
        priority = float(getattr(self._waits, "priority", 0.0))
        ticket = (-priority, next(self._tickets))
        with self._cond:
            heapq.heappush(self._waiting, ticket)
            try:
                while True:
                    if self._closed:
                        raise RunnerError("the worker pool is closed")
                    if self._free and self._waiting[0] == ticket:
                        held_back = self._outranked_for(priority)
                        if held_back is None:
                            break
                        self._cond.wait(held_back)
                    else:
                        self._cond.wait()
            finally:
                self._waiting.remove(ticket)
                heapq.heapify(self._waiting)
                self._cond.notify_all()  # the next in line may find a worker too
            # Prefer a worker that is already up.
            self._free.sort(key=lambda w: w is None or w.exit_code() is not None)
            worker = self._free.pop(0)
        try:
            if worker is None or worker.exit_code() is not None:
                if worker is not None:
                    worker.stop()
                    self.replaced += 1
                worker = self._start()
            worker.wait_ready()
        except BaseException:
            self._release(None)
            raise
        return worker

    def _release(self, worker: Worker | None) -> None:
        with self._cond:
            if self._closed:
                if worker is not None:
                    worker.stop()
                return
            self._free.append(worker)
            self._cond.notify_all()

    @contextmanager
    def prioritized(self, priority: float, key: str | None = None) -> Iterator[None]:
        """Steps the calling thread runs inside get a free worker before those of
        lower priority (the cascade gives the node on the critical path the most).

        `key` names the step announced with `expect(key, ...)`: its announcement ends
        when the thread asks for a step, or at the latest when this block ends (a
        node found in the derive cache asks for none)."""
        previous = getattr(self._waits, "priority", 0.0), getattr(self._waits, "key", None)
        self._waits.priority, self._waits.key = priority, key
        try:
            yield
        finally:
            self._arrived()
            self._waits.priority, self._waits.key = previous

    def expect(self, key: str, priority: float) -> None:
        """Announce a step of `priority` that a thread will soon ask for, inside
        `prioritized(priority, key)`: until it asks (or `EXPECT_S` has passed), no step
        of lower priority takes a free worker. A scheduler that starts several tasks
        at once announces them in its order, so the first to reach the pool is not
        simply the first served (a cascade's critical path would lose its worker to
        a node that merely started faster)."""
        with self._cond:
            self._expected[key] = (priority, time.monotonic() + EXPECT_S)

    def _arrived(self) -> None:
        """The calling thread asks for its step now: its announcement has done its job."""
        key = getattr(self._waits, "key", None)
        if key is None:
            return
        with self._cond:
            if self._expected.pop(key, None) is not None:
                self._cond.notify_all()

    def _outranked_for(self, priority: float) -> float | None:
        """None if a free worker is left over for a step of `priority` once every
        announced step of higher priority has one (under the lock); else how long until
        the soonest of those announcements lapses."""
        now = time.monotonic()
        for key in [k for k, (_, deadline) in self._expected.items() if deadline <= now]:
            del self._expected[key]
        lapses = [d for p, d in self._expected.values() if p > priority]
        return min(lapses) - now if len(lapses) >= len(self._free) else None

    def _replace(self, worker: Worker) -> Worker | None:
        """Stop a worker that cannot go on; start its successor now (it warms up while
        the host commits this step's output)."""
        worker.stop()
        self.replaced += 1
        if self._closed:
            return None
        return self._start()

    # ------------------------------------------------------------------ Runner

    def run_step(
        self,
        spec: StepSpec,
        *,
        timeout_s: float | None = None,
        logger: StepLogger | None = None,
    ) -> StepResult:
        """Run the step on a free warm worker; see `Runner.run_step`. If the same step
        (all but its output folder) was started early (`run_early`), its result is
        taken instead: its output moves to this step's folder, its log to `logger`."""
        checked = check_spec(spec, self.threads)
        self._arrived()
        with self._cond:
            early = self._early.pop(_step_key(checked), None)
        if early is not None:
            return self._take_early(early, checked, logger, time.monotonic())
        return self._run_checked(checked, timeout_s, logger)

    def run_early(self, spec: StepSpec, *, priority: float = 0.0, anytime: bool = False) -> bool:
        """Start `spec` now, in the background, for a `run_step` of the same step that
        will come (a cascade starts its first steps while Prefect starts, and a node's
        children while the node is committed): that call then waits for this run and
        takes its result (`EarlyStep`). No timeout applies. A step started early that
        nobody takes is left to `forget_early`; after `close_early`, nothing is started
        unless `anytime` (the caller knows the step will be asked for, or forgets it).
        Whether it was started."""
        checked = check_spec(spec, self.threads)
        early = EarlyStep(checked, [], threading.Event())
        with self._cond:
            if (
                self._closed
                or not (self._early_open or anytime)
                or _step_key(checked) in self._early
            ):
                return False
            self._early[_step_key(checked)] = early

        def run() -> None:
            asked = time.monotonic()
            try:
                with self.prioritized(priority):
                    early.result = self._run_checked(checked, None, _keeping_logger(early.records))
            except BaseException as exc:  # handed to the caller that takes the result
                early.error = exc
            finally:
                early.began = asked + self.waited_s()
                early.done.set()

        threading.Thread(target=run, name="early-step", daemon=True).start()
        return True

    def close_early(self) -> None:
        """Start no more early steps (those started are still taken): the caller now
        asks for its steps itself, and one started later might never be taken."""
        with self._cond:
            self._early_open = False

    def forget_early(self, under: Path) -> list[EarlyStep]:
        """Drop the early steps whose output folder is under `under` that nobody took;
        they may still run (their folders are the caller's to remove once they end)."""
        with self._cond:
            mine = [key for key, e in self._early.items() if Path(e.spec.out).is_relative_to(under)]
            return [self._early.pop(key) for key in mine]

    def _take_early(
        self, early: EarlyStep, checked: StepSpec, logger: StepLogger | None, asked: float
    ) -> StepResult:
        early.done.wait()
        # Queued: only for as long as the early run still waited for a worker after
        # this step was asked for (before that, nobody was waiting).
        began = early.began if early.began is not None else asked
        self._waits.seconds = max(0.0, began - asked)
        self._waits.early_began = early.began
        with self._cond:
            self.early_taken += 1
        log = logger or step_logger()
        for record in early.records:
            log.info(record.msg, *(record.args if isinstance(record.args, tuple) else ()))
        if early.error is not None:
            raise early.error
        assert early.result is not None
        out = Path(checked.out)
        for item in Path(early.spec.out).iterdir():
            shutil.move(item, out / item.name)  # a rename, unless another file system
        return replace(early.result, out_dir=out)

    def _run_checked(
        self, checked: StepSpec, timeout_s: float | None, logger: StepLogger | None
    ) -> StepResult:
        self._waits.early_began = None
        tail = LogTail.for_step(checked.action, logger)
        started = time.monotonic()
        worker = self._acquire()
        self._waits.seconds = time.monotonic() - started
        after: Worker | None = worker
        try:
            ending = worker.run(checked, timeout_s, tail)
            if not ending.reusable:
                after = self._replace(worker)
        except BaseException:
            after = self._replace(worker)
            raise
        finally:
            self._release(after)
        where = worker.where
        if ending.oom:
            raise OutOfMemoryError(
                f"{checked.action} step ran out of memory {where} and was killed "
                "(a fresh worker replaces it)"
            )
        result = read_outcome(checked, ending.exit_code, tail.lines, where)
        return self._result(checked, result, time.monotonic() - started, tail, worker)

    def _result(
        self,
        spec: StepSpec,
        result: dict[str, Any],
        seconds: float,
        tail: LogTail,
        worker: Worker,
    ) -> StepResult:
        return StepResult(
            action=spec.action,
            runner=self.name,
            out_dir=Path(spec.out),
            result=result,
            seconds=seconds,
            log_tail=list(tail.lines),
        )

    def early_began(self) -> float | None:
        """When (`time.monotonic()`) the step of the calling thread's last `run_step`
        began, if it took a step started early (`run_early`); else None."""
        return getattr(self._waits, "early_began", None)

    def waited_s(self) -> float:
        """How long the calling thread's last step waited for a free (and ready)
        worker: queueing, not work, when more steps are ready than slots."""
        return float(getattr(self._waits, "seconds", 0.0))

    # ------------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Stop every idle worker now; busy ones stop when their step ends."""
        with self._cond:
            self._closed = True
            workers, self._free = [w for w in self._free if w is not None], []
            self._cond.notify_all()
        for worker in workers:
            worker.stop()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------- shared pools

_shared: dict[str, WorkerPool] = {}
_shared_lock = threading.Lock()


def shared_pool(kind: str, factory: Callable[[int], WorkerPool], slots: int | None) -> WorkerPool:
    """This process's pool of `kind`, made with `factory(slots)` on first use.

    The cascade's tasks run in threads of one process (or one per Dask worker), and
    all of them should draw on the same warm workers."""
    with _shared_lock:
        pool = _shared.get(kind)
        if pool is None or pool._closed:
            pool = factory(slots or 1)
            _shared[kind] = pool
        return pool


def close_shared_pools() -> None:
    """Stop the workers of every shared pool (end of a cascade, or at exit)."""
    with _shared_lock:
        pools = list(_shared.values())
        _shared.clear()
    for pool in pools:
        pool.close()


atexit.register(close_shared_pools)
