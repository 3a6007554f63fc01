"""Warm step workers as long-lived task containers: the docker runner, started once per slot.

A bind mount cannot be added to a running container, so a warm container gets three
mounts of its slot's folder on the host when it starts, and every step reaches it
through them:

- `/control` (read-write): the request and response files of `lineage.steps.worker`;
- `/in` (**read-only**): the host puts the step's inputs (parents, model, data and code)
  in a fresh `/in/sN/` before the step, as hard links (a copy when the container's
  user could not read a file, or across file systems), and deletes it afterwards;
- `/out` (read-write): the step writes into a fresh, empty `/out/sN/`; afterwards the
  host moves what it wrote into the step's real output folder, takes ownership of it,
  and deletes `/out/sN/`.

So a step sees only its own inputs and its own output folder: the previous step's
folders are gone before the next request is written. The container has the same
isolation as a one-shot step container (`DockerRunner.isolation`: no network,
read-only root, a size-capped /tmp, no capabilities, no privilege escalation, a pids
limit, memory without swap, a non-root user), with a CPU limit of the step's thread
count. What is kept between steps is the worker process itself (the imported
libraries) and the /tmp tmpfs, which the worker empties after every step. A step that
runs user code retires its worker (see `lineage.steps.worker`), so user code never
shares a container with a later step; a crash, an OOM kill or a timeout replaces it.

Containers carry the label `lineage.worker=HOST:PID` of the process that owns them: a
pool removes the leftovers of owners that no longer run (a host killed with SIGKILL),
and a worker left alone exits after `LINEAGE_WORKER_IDLE_S` seconds anyway.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import tempfile
import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from lineage.steps.engine import connect
from lineage.steps.pool.base import Worker, WorkerPool
from lineage.steps.pool.placement import CpuPlacement, parse_cpuset, pinning_enabled
from lineage.steps.runners.base import LogTail, StepResult
from lineage.steps.runners.docker import (
    STEP_LABEL,
    DockerRunner,
    can_read,
    image_digest,
)
from lineage.steps.runners.errors import RunnerError
from lineage.steps.spec import DeriveSpec, ProbeSpec, StepExit, StepSpec, TestSpec

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.containers import Container
    from docker.models.images import Image

log = logging.getLogger("lineage.steps.pool.docker")

#: Label of warm worker containers: `HOST:PID` of the process that owns them.
WORKER_LABEL = "lineage.worker"


def owner_label() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_orphans(client: DockerClient) -> int:
    """Remove worker containers whose owning process (on this host) is gone."""
    host = socket.gethostname()
    removed = 0
    for container in client.containers.list(all=True, filters={"label": WORKER_LABEL}):
        owner_host, _, pid = container.labels.get(WORKER_LABEL, "").rpartition(":")
        if owner_host == host and pid.isdigit() and not _pid_alive(int(pid)):
            with contextlib.suppress(Exception):
                container.remove(force=True)
                removed += 1
    return removed


def engine_cpus(client: DockerClient) -> int:
    """How many cores the engine has (0 if it will not say)."""
    try:
        return int(client.info().get("NCPU") or 0)
    except Exception:
        return 0


def pinned_cores(client: DockerClient) -> set[int]:
    """The cores that running worker containers (of any process) are pinned to."""
    cores: set[int] = set()
    try:
        running = client.containers.list(filters={"label": WORKER_LABEL, "status": "running"})
    except Exception:
        return cores
    for container in running:
        host_config = container.attrs.get("HostConfig") or {}
        cores |= parse_cpuset(str(host_config.get("CpusetCpus") or ""))
    return cores


def _link_file(source: Path, target: Path, uid: int, gid: int) -> None:
    """A hard link to `source` (free), or a readable copy when the container's user
    could not read it or the link crosses file systems."""
    if source.is_symlink():
        os.symlink(os.readlink(source), target)  # shown as is, as a bind mount would
        return
    if can_read(source.stat(), uid, gid):
        try:
            os.link(source, target)
            return
        except OSError:
            pass
    shutil.copyfile(source, target)
    target.chmod(0o644)


def link_tree(source: Path, target: Path, uid: int, gid: int) -> None:
    """Put `source` (a file or a folder) at `target` for the container to read."""
    if not source.is_dir() or source.is_symlink():
        _link_file(source, target, uid, gid)
        return
    target.mkdir(mode=0o755)
    for path in sorted(source.rglob("*")):
        dest = target / path.relative_to(source)
        if path.is_dir() and not path.is_symlink():
            dest.mkdir(mode=0o755, exist_ok=True)
        else:
            _link_file(path, dest, uid, gid)


def _chown_tree(folder: Path, uid: int, gid: int) -> None:
    for root, dirs, files in os.walk(folder):
        for name in (*dirs, *files):
            with contextlib.suppress(OSError):
                os.lchown(os.path.join(root, name), uid, gid)
    with contextlib.suppress(OSError):
        os.lchown(folder, uid, gid)


class DockerWorker(Worker):
    """One warm task container (see the module docstring)."""

    where: ClassVar[str] = "in a warm container"

    def __init__(
        self,
        cpu_share: int,
        settings: DockerRunner,
        client: DockerClient,
        image: Image,
        user: str,
        cpus: float,
        placement: CpuPlacement,
    ) -> None:
        super().__init__(cpu_share)
        self.settings = settings
        self.client = client
        self.image = image
        self.user = user
        uid, _, gid = user.partition(":")
        self.uid, self.gid = int(uid), int(gid or uid)
        self.cpus = cpus
        self.placement = placement
        self.cpuset: str | None = None
        self.root: Path | None = None
        self.container: Container | None = None
        self._state: dict[str, Any] = {}

    # ------------------------------------------------------------------ life

    def launch(self) -> None:
        from docker.types import Mount

        self.root = Path(tempfile.mkdtemp(prefix="lineage-worker-"))
        self.control = self.root / "control"
        for name in ("control", "in", "out"):
            (self.root / name).mkdir(mode=0o755)
        if os.geteuid() == 0:  # the container's user writes these two
            for name in ("control", "out"):
                os.chown(self.root / name, self.uid, self.gid)
        mounts = [
            Mount("/control", str(self.root / "control"), type="bind", read_only=False),
            Mount("/in", str(self.root / "in"), type="bind", read_only=True),
            Mount("/out", str(self.root / "out"), type="bind", read_only=False),
        ]
        # A core set of its own where the engine has cores to spare (`placement`).
        self.cpuset = self.placement.take()
        try:
            try:
                self._start_container(mounts)
            except Exception as exc:
                if self.cpuset is None:
                    raise
                log.info(
                    "the engine would not pin a worker to cores %s (%s): workers run unpinned",
                    self.cpuset,
                    getattr(exc, "explanation", exc),
                )
                self._remove_container()
                self.placement.refused(self.cpuset)
                self.cpuset = None
                self._start_container(mounts)
        except Exception as exc:
            self.stop()
            raise RunnerError(
                f"the Docker engine refused a worker container: {getattr(exc, 'explanation', exc)}"
            ) from exc
        threading.Thread(target=self._pump, name="worker-logs", daemon=True).start()

    def _start_container(self, mounts: list[Any]) -> None:
        threads = str(self.cpu_share)
        pinned = {"cpuset_cpus": self.cpuset} if self.cpuset is not None else {}
        self.container = self.client.containers.create(
            self.image.id,  # by id: the digest we report is exactly what ran
            command=["--worker", "/control"],
            user=self.user,
            mounts=mounts,
            labels={**self.settings.labels, STEP_LABEL: "worker", WORKER_LABEL: owner_label()},
            detach=True,
            **self.settings.isolation(
                self.cpus, {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
            ),
            **pinned,
        )
        self.container.start()

    def _remove_container(self) -> None:
        if self.container is not None:
            with contextlib.suppress(Exception):
                self.container.remove(force=True)
            self.container = None

    def _pump(self) -> None:
        assert self.container is not None
        try:
            for chunk in self.container.logs(stream=True, follow=True, stdout=True, stderr=True):
                self.feed(chunk.decode("utf-8", errors="replace"))
        except Exception as exc:  # the container went away: its exit code says why
            log.debug("worker log stream ended: %s", exc)

    def exit_code(self) -> int | None:
        if self.container is None:
            return None
        if self._state.get("Status") not in ("exited", "dead"):
            try:
                self.container.reload()
            except Exception:  # removed under us
                return -1
            self._state = dict(self.container.attrs.get("State") or {})
        if self._state.get("Status") in ("exited", "dead"):
            return int(self._state.get("ExitCode", -1))
        return None

    def out_of_memory(self) -> bool:
        return bool(self._state.get("OOMKilled")) and not self._killed

    def start_failure_hint(self, exit_code: int) -> str:
        if exit_code == StepExit.BAD_SPEC:  # the entry point does not know `--worker`
            return (
                f"the task image {self.settings.image} predates warm workers: rebuild it "
                "with `make image` (or run with --no-warm)"
            )
        return ""

    def kill(self) -> None:
        if self.container is not None:
            with contextlib.suppress(Exception):
                self.container.kill()

    def stop(self) -> None:
        self._remove_container()
        self.placement.give_back(self.cpuset)
        self.cpuset = None
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)

    # ------------------------------------------------------------------ one step

    def stage(self, spec: StepSpec, seq: int) -> StepSpec:
        """Link the step's inputs into `/in/sN`, make `/out/sN`: the spec inside."""
        assert self.root is not None
        step_in = self.root / "in" / f"s{seq}"
        step_out = self.root / "out" / f"s{seq}"
        step_in.mkdir(mode=0o755)
        step_out.mkdir(mode=0o755)
        if os.geteuid() == 0:
            os.chown(step_out, self.uid, self.gid)
        inside = f"/in/s{seq}"

        def put(host: str, name: str) -> str:
            link_tree(Path(host).resolve(), step_in / name, self.uid, self.gid)
            return f"{inside}/{name}"

        code = tuple(put(p, f"code{i}") for i, p in enumerate(spec.code))
        out = f"/out/s{seq}"
        if isinstance(spec, ProbeSpec):
            return replace(spec, code=code, out=out)
        parents = tuple(put(p, f"p{i}") for i, p in enumerate(spec.parents))
        data = spec.data
        if data is not None and Path(data.removeprefix("file:")).exists():
            # A file data set is linked in; anything else is a shipped name, passed as is.
            (step_in / "data").mkdir(mode=0o755)
            source = data.removeprefix("file:")
            data = put(source, f"data/{Path(source).name}")
        if isinstance(spec, TestSpec):
            return replace(
                spec, model=put(spec.model, "model"), parents=parents, data=data, code=code, out=out
            )
        assert isinstance(spec, DeriveSpec)
        return replace(spec, parents=parents, data=data, code=code, out=out)

    def unstage(self, spec: StepSpec, seq: int) -> None:
        """Move what the step wrote into its real output folder, owned by the host."""
        assert self.root is not None
        step_out = self.root / "out" / f"s{seq}"
        target = Path(spec.out)
        if step_out.is_dir():
            for entry in sorted(step_out.iterdir()):
                shutil.move(str(entry), str(target / entry.name))
            if os.geteuid() == 0:
                _chown_tree(target, 0, 0)
        shutil.rmtree(step_out, ignore_errors=True)
        shutil.rmtree(self.root / "in" / f"s{seq}", ignore_errors=True)


class DockerPool(WorkerPool):
    """The docker runner with warm workers: one long-lived task container per slot.

    Args:
        slots: steps at once. threads: torch threads per step (default: see
            `step_threads`). cpus: each container's CPU limit (default: the slot's
            share of the cores, `cpu_share`). Any other keyword is a
            `DockerRunner` option (image, memory, gpus, tmp_size, pids_limit, network,
            labels, client).
    """

    name: ClassVar[str] = "docker"

    def __init__(
        self,
        slots: int = 1,
        *,
        threads: int | None = None,
        cpus: float | None = None,
        prestart: bool = True,
        **options: Any,
    ) -> None:
        self.settings = DockerRunner(**options, threads=threads)
        self.client = self.settings._client or connect()
        self.image = self.settings.get_image(self.client)
        self.digest = image_digest(self.image)
        self.user = self.settings.user_for(self.image)
        removed = remove_orphans(self.client)
        if removed:
            log.info("removed %d worker container(s) left by a process that is gone", removed)
        self._cpus = cpus
        self._placement: CpuPlacement | None = None
        self._placement_lock = threading.Lock()  # workers start on several threads
        super().__init__(slots, threads=threads, prestart=prestart)

    def _worker_cpus(self) -> float:
        return self._cpus if self._cpus is not None else float(self.cpu_share)

    @property
    def placement(self) -> CpuPlacement:
        """The slots' core sets, worked out on first use (the thread count is known)."""
        with self._placement_lock:
            if self._placement is None:
                engine_cores, taken = 0, set[int]()
                if pinning_enabled():
                    engine_cores, taken = engine_cpus(self.client), pinned_cores(self.client)
                self._placement = CpuPlacement(engine_cores, taken, self.slots, self._worker_cpus())
            return self._placement

    def new_worker(self) -> Worker:
        return DockerWorker(
            self.cpu_share,
            self.settings,
            self.client,
            self.image,
            self.user,
            self._worker_cpus(),
            self.placement,
        )

    def pinned(self) -> list[str]:
        return self.placement.held()

    def _result(
        self,
        spec: StepSpec,
        result: dict[str, Any],
        seconds: float,
        tail: LogTail,
        worker: Worker,
    ) -> StepResult:
        step = super()._result(spec, result, seconds, tail, worker)
        step.image, step.image_digest = self.settings.image, self.digest
        return step
