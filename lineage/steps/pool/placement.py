"""Which cores each warm task container runs on: one set of cores per slot.

Why pin at all: a worker container's steps are CPU-bound, and a slot's cores are its
own by design (`step_threads`: the slots together use at most the cores). Left to the
kernel, the containers of one engine share one CPU group, and under a cgroup v1 engine
the scheduler packs that group's tasks onto one core while any other process runs
(measured on 2 cores: two containers importing torch next to one niced host process
took 4.6 s instead of 2.4 s; each pinned to its own core, 3.0 to 3.7 s). A cascade's
host side (the Prefect server, commits) always runs beside its workers.

Pinning is done only where it cannot crowd anyone: the slots' cores must fit in the
engine's cores that no other lineage worker container is pinned to (several cascades
on one engine share it out, instead of all piling onto core 0). Otherwise, or with
`LINEAGE_PIN_WORKERS=0`, or if the engine refuses a core set, containers are not
pinned and the kernel places them, as before.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable

from lineage.config import switched_on

#: `LINEAGE_PIN_WORKERS=0` leaves the worker containers' placement to the kernel.
ENV = "LINEAGE_PIN_WORKERS"


def pinning_enabled() -> bool:
    return switched_on(ENV)


def parse_cpuset(text: str) -> set[int]:
    """The cores a Docker `CpusetCpus` value names ("0-3,6" -> {0, 1, 2, 3, 6}).

    >>> sorted(parse_cpuset("0-2,5"))
    [0, 1, 2, 5]
    >>> parse_cpuset("")
    set()
    """
    cores: set[int] = set()
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        if first.isdigit():
            cores.update(range(int(first), int(last or first) + 1))
    return cores


def format_cpuset(cores: Iterable[int]) -> str:
    """The Docker `CpusetCpus` value of `cores`.

    >>> format_cpuset([3, 2])
    '2,3'
    """
    return ",".join(str(core) for core in sorted(cores))


class CpuPlacement:
    """The core sets of a pool's slots, lent to its workers one at a time.

    Args:
        engine_cores: how many cores the engine has (`docker info`'s NCPU).
        taken: cores other worker containers are pinned to.
        slots: the pool's slots. cpus: each worker's CPU limit (rounded up to cores).

    >>> placement = CpuPlacement(engine_cores=4, taken={0}, slots=1, cpus=2)
    >>> placement.take()
    '1,2'
    >>> CpuPlacement(engine_cores=2, taken=set(), slots=3, cpus=1).take() is None
    True
    """

    def __init__(self, engine_cores: int, taken: set[int], slots: int, cpus: float) -> None:
        per_worker = max(1, math.ceil(cpus))
        free = [core for core in range(engine_cores) if core not in taken]
        self._lock = threading.Lock()
        self._free: list[str] = []
        if slots * per_worker <= len(free):
            self._free = [
                format_cpuset(free[i * per_worker : (i + 1) * per_worker]) for i in range(slots)
            ]
        self._held: list[str] = []
        self._refused = False

    def take(self) -> str | None:
        """A free core set for a new worker, or None: that worker is not pinned."""
        with self._lock:
            if not self._free:
                return None
            cpuset = self._free.pop(0)
            self._held.append(cpuset)
            return cpuset

    def give_back(self, cpuset: str | None) -> None:
        """A stopped worker's core set, for the worker that replaces it."""
        with self._lock:
            if cpuset is not None and cpuset in self._held:
                self._held.remove(cpuset)
                if not self._refused:
                    self._free.insert(0, cpuset)

    def refused(self, cpuset: str) -> None:
        """The engine would not pin a worker to `cpuset` (a restricted cpuset): that
        worker runs unpinned, and so does every worker started from now on."""
        with self._lock:
            self._refused = True
            self._free.clear()
        self.give_back(cpuset)

    def held(self) -> list[str]:
        """The core sets of the workers pinned now."""
        with self._lock:
            return sorted(self._held)
