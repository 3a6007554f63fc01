"""The docker runner: the same step entrypoint in a locked-down task container.

Each step gets a fresh container from the task image with:

- parents, model, data and code folders bind-mounted **read-only** (`/in/p0...`,
  `/in/model`, `/data/...`, `/code/N`), the output folder read-write at `/out`, the spec
  read-only at `/spec/spec.json`;
- **no network** (`network_mode="none"`: only a loopback interface);
- a **read-only root file system**, with a size-capped tmpfs on `/tmp` for caches;
- a **non-root user** (the image's uid 10001, or the caller's own uid when not root),
  no capabilities, no privilege escalation, a pids limit;
- **CPU and memory limits** (swap disabled, so the limit is real) and optionally GPUs.

The container's output is streamed line by line to the Prefect run logger (or a plain
logger); its exit code, OOM flag and the step's `error.json` become one specific
`RunnerError`; a timeout kills it; and it is removed whatever happens. The result
carries the image's content digest for the new version's provenance.

Bind mounts are host paths, so the engine must run on this machine (the default local
socket); a remote DOCKER_HOST needs shared storage at the same paths.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from lineage.steps.engine import connect
from lineage.steps.images import DEFAULT_TASK_IMAGE
from lineage.steps.runners.base import (
    LogTail,
    Runner,
    StepLogger,
    StepResult,
    check_spec,
    read_outcome,
    spec_file,
)
from lineage.steps.runners.errors import (
    ImageNotFoundError,
    OutOfMemoryError,
    RunnerError,
    StepTimeoutError,
)
from lineage.steps.spec import DeriveSpec, ProbeSpec, StepSpec, TestSpec

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.containers import Container
    from docker.models.images import Image

log = logging.getLogger("lineage.steps.runners.docker")

#: Label on every step container, so leftovers (if an engine crash ever leaves one) can
#: be found with `docker ps -a --filter label=lineage.step`.
STEP_LABEL = "lineage.step"


def image_digest(image: Image) -> str:
    """The digest to record as provenance: the registry digest if the image came from a
    registry, else the engine's content-addressed image id (`sha256:...`)."""
    repo_digests = image.attrs.get("RepoDigests") or []
    return str(repo_digests[0]) if repo_digests else str(image.id)


def _parse_memory(value: str | int) -> int:
    if isinstance(value, int):
        return value
    text = value.strip().lower().removesuffix("b")
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def _format_bytes(count: int) -> str:
    return f"{count / (1 << 30):.1f} GiB" if count >= 1 << 30 else f"{count / (1 << 20):.0f} MiB"


class DockerRunner(Runner):
    """Run steps in task containers (see the module docstring for the isolation).

    Args:
        image: task image name or id; default `LINEAGE_TASK_IMAGE` or `lineage-task:latest`.
        cpus: CPU limit (fractions allowed).
        memory: memory limit, e.g. "4g" or bytes; swap is not allowed on top.
        gpus: None for no GPU, -1 for all, or a count (needs the NVIDIA container toolkit).
        tmp_size: size of the /tmp tmpfs (counts against the memory limit).
        pids_limit: most processes + threads in the container.
        network: give the step a network (default off; only for trusted special cases).
        labels: extra container labels (e.g. the flow run id, to find a step's container).
        client: a Docker client to reuse; default: connect on each step.
        threads: torch threads of a step whose spec names none (default: the
            determinism default).

    Example (with an engine running and the task image built)::

        runner = DockerRunner(memory="2g", cpus=2)
        runner.run_step(spec).result   # spec: a typed step spec (lineage.steps.spec)
    """

    name: ClassVar[str] = "docker"

    def __init__(
        self,
        image: str | None = None,
        *,
        cpus: float = 2.0,
        memory: str | int = "4g",
        gpus: int | None = None,
        tmp_size: str = "1g",
        pids_limit: int = 4096,
        network: bool = False,
        labels: Mapping[str, str] | None = None,
        client: DockerClient | None = None,
        threads: int | None = None,
    ) -> None:
        self.threads = threads
        self.image = image or os.environ.get("LINEAGE_TASK_IMAGE") or DEFAULT_TASK_IMAGE
        self.cpus = cpus
        self.memory = _parse_memory(memory)
        self.gpus = gpus
        self.tmp_size = tmp_size
        self.pids_limit = pids_limit
        self.network = network
        self.labels = dict(labels or {})
        self._client = client

    # ------------------------------------------------------------------ pieces

    def get_image(self, client: DockerClient) -> Image:
        import docker.errors

        try:
            return client.images.get(self.image)
        except docker.errors.ImageNotFound:
            raise ImageNotFoundError(
                f"task image {self.image} not found on the Docker engine; build it with "
                "`make image` (or `lineage image build`)"
            ) from None

    def _container_paths(
        self, spec: StepSpec, user: str, staging: Path
    ) -> tuple[StepSpec, list[Any]]:
        """The spec with container paths, and the mounts that back them.

        Inputs the container's user could not read are replaced by readable copies in
        `staging` (see `readable_source`).
        """
        from docker.types import Mount

        mounts: list[Any] = []
        uid, _, gid = user.partition(":")

        def mount(host: str, target: str, read_only: bool = True) -> str:
            source = Path(host).resolve()
            if read_only:
                source = readable_source(source, int(uid), int(gid or uid), staging)
            mounts.append(
                Mount(target=target, source=str(source), type="bind", read_only=read_only)
            )
            return target

        code = tuple(mount(p, f"/code/{i}") for i, p in enumerate(spec.code))
        out = mount(spec.out, "/out", read_only=False)
        if isinstance(spec, ProbeSpec):
            return replace(spec, code=code, out=out), mounts
        parents = tuple(mount(p, f"/in/p{i}") for i, p in enumerate(spec.parents))
        data = spec.data
        if data is not None and Path(data.removeprefix("file:")).exists():
            # A file data set is mounted; anything else is a shipped name, passed as is.
            data = mount(data.removeprefix("file:"), f"/data/{Path(data).name}")
        if isinstance(spec, TestSpec):
            model = mount(spec.model, "/in/model")
            return replace(
                spec, model=model, parents=parents, data=data, code=code, out=out
            ), mounts
        assert isinstance(spec, DeriveSpec)
        return replace(spec, parents=parents, data=data, code=code, out=out), mounts

    def user_for(self, image: Image) -> str:
        """Who runs the step: the image's non-root user when we are root, else ourselves.

        Running as the caller's uid keeps output files owned by the caller; as root we
        instead hand the output folder to the image's user for the run (see `handover`).
        """
        if os.geteuid() != 0:
            return f"{os.geteuid()}:{os.getegid()}"
        user = image.attrs.get("Config", {}).get("User") or ""
        uid, _, gid = user.partition(":")
        # Numeric only: the host must chown the output folder to it without the image's
        # /etc/passwd (containers/Dockerfile sets USER 10001:10001).
        if not uid.isdigit() or int(uid) == 0 or (gid and not gid.isdigit()):
            raise RunnerError(
                f"task image {self.image} must set a numeric non-root USER uid:gid "
                f"(has {user or 'none'}); rebuild it with `make image`"
            )
        return user

    def isolation(
        self, cpus: float | None = None, env: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """The container settings every step container gets, one-shot or warm (see the
        module docstring): no network, read-only root, /tmp tmpfs, limits, no
        capabilities, no privilege escalation. The one place they are written."""
        from docker.types import DeviceRequest

        cpus = self.cpus if cpus is None else cpus
        device_requests = None
        if self.gpus:
            device_requests = [DeviceRequest(count=self.gpus, capabilities=[["gpu"]])]
        return {
            "network_mode": "bridge" if self.network else "none",
            "read_only": True,
            "tmpfs": {"/tmp": f"rw,nosuid,nodev,size={self.tmp_size},mode=1777"},
            "mem_limit": self.memory,
            "memswap_limit": self.memory,  # no swap: the limit is a limit
            "nano_cpus": int(cpus * 1e9),
            "pids_limit": self.pids_limit,
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "device_requests": device_requests,
            "environment": {**_step_environment(cpus), **(env or {})},
        }

    def _create(
        self, client: DockerClient, image: Image, user: str, mounts: list[Any], action: str
    ) -> Container:
        return client.containers.create(
            image.id,  # by id: the digest we report is exactly what ran
            command=["/spec/spec.json"],
            user=user,
            mounts=mounts,
            labels={**self.labels, STEP_LABEL: action},
            detach=True,
            **self.isolation(),
        )

    # ------------------------------------------------------------------ the run

    def run_step(
        self,
        spec: StepSpec,
        *,
        timeout_s: float | None = None,
        logger: StepLogger | None = None,
    ) -> StepResult:
        """Run the step in a fresh container; see `Runner.run_step`."""
        checked = check_spec(spec, self.threads)
        action = checked.action
        started = time.monotonic()
        client = self._client or connect()
        image = self.get_image(client)
        digest = image_digest(image)
        out = Path(checked.out)
        user = self.user_for(image)
        tail = LogTail.for_step(action, logger)
        with tempfile.TemporaryDirectory(prefix="lineage-stage-") as staging:
            inside, mounts = self._container_paths(checked, user, Path(staging))
            with spec_file(inside) as path, handover(out, user):
                mounts.append(_spec_mount(path))
                exit_code, oom = self._run(client, image, user, mounts, action, tail, timeout_s)
        if oom or (exit_code == 137 and self._oom_suspected(tail)):
            raise OutOfMemoryError(
                f"{action} step exceeded its memory limit of {_format_bytes(self.memory)} "
                f"and was killed; raise it with memory=... (--memory)"
            )
        result = read_outcome(checked, exit_code, tail.lines, f"in container ({self.image})")
        return StepResult(
            action=action,
            runner=self.name,
            out_dir=out,
            result=result,
            seconds=time.monotonic() - started,
            image=self.image,
            image_digest=digest,
            log_tail=list(tail.lines),
        )

    def _run(
        self,
        client: DockerClient,
        image: Image,
        user: str,
        mounts: list[Any],
        action: str,
        tail: LogTail,
        timeout_s: float | None,
    ) -> tuple[int, bool]:
        """Create, start, stream, wait: and remove the container whatever happens."""
        import docker.errors

        container: Container | None = None
        try:
            container = self._create(client, image, user, mounts, action)
            container.start()
            reader = threading.Thread(target=_pump, args=(container, tail), daemon=True)
            reader.start()
            exit_code, oom = self._wait(container, timeout_s, action)
            reader.join(timeout=10)
            tail.close()
            return exit_code, oom
        except docker.errors.APIError as exc:
            raise RunnerError(
                f"{action} step: the Docker engine refused the container: {exc.explanation or exc}"
            ) from exc
        finally:
            if container is not None:
                with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                    container.remove(force=True)

    def _wait(self, container: Container, timeout_s: float | None, action: str) -> tuple[int, bool]:
        """Wait for the container; on timeout kill it. Returns (exit code, OOM-killed)."""
        import requests.exceptions

        try:
            status = container.wait(timeout=timeout_s)
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            with contextlib.suppress(Exception):
                container.kill()
            raise StepTimeoutError(
                f"{action} step timed out after {timeout_s:g} s; the container was killed"
            ) from None
        container.reload()
        oom = bool(container.attrs.get("State", {}).get("OOMKilled"))
        return int(status.get("StatusCode", -1)), oom

    @staticmethod
    def _oom_suspected(tail: LogTail) -> bool:
        # cgroup v1 sometimes kills a child and not the container's init; its exit is
        # then a plain 137 with the kernel's "Killed" as the last word.
        return bool(tail.lines) and tail.lines[-1].strip().endswith("Killed")


def _step_environment(cpus: float) -> dict[str, str]:
    # The derive thread count is part of the determinism contract: a host override
    # must reach the container too, or the two runners would compute different bits.
    env = {"LINEAGE_STEP_CPUS": f"{cpus:g}"}
    for name in ("LINEAGE_DERIVE_THREADS",):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


def can_read(st: os.stat_result, uid: int, gid: int) -> bool:
    """Whether uid:gid may read this file, or list and enter this folder."""
    need = 0o5 if stat.S_ISDIR(st.st_mode) else 0o4
    if st.st_uid == uid:
        bits = st.st_mode >> 6
    elif st.st_gid == gid:
        bits = st.st_mode >> 3
    else:
        bits = st.st_mode
    return bits & need == need


def readable_source(source: Path, uid: int, gid: int, staging: Path) -> Path:
    """`source`, or a readable copy of it when the container's user could not read it.

    Weights are often written 0600 (safetensors writes through a private temp file),
    and the container's user is not the files' owner. Changing the caller's files'
    modes is not ours to do, so an unreadable input is copied once into a private
    staging folder with readable modes instead (a file copy costs far less than a step).
    """
    paths = [source] if source.is_file() else [source, *source.rglob("*")]
    if all(can_read(p.stat(), uid, gid) for p in paths):
        return source
    target = staging / f"{len(list(staging.iterdir()))}-{source.name}"
    log.info("input %s is not readable by uid %d in the container: staging a copy", source, uid)
    if source.is_file():
        shutil.copyfile(source, target)
        target.chmod(0o644)
        return target
    for path in paths:
        dest = target / path.relative_to(source)
        if path.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
            dest.chmod(0o755)
        else:
            shutil.copyfile(path, dest)
            dest.chmod(0o644)
    return target


def _spec_mount(path: Path) -> Any:
    from docker.types import Mount

    return Mount(target="/spec", source=str(path.parent), type="bind", read_only=True)


def _pump(container: Container, tail: LogTail) -> None:
    """Copy the container's output (stdout and stderr) into the log as it comes."""
    try:
        for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True):
            tail.feed(chunk.decode("utf-8", errors="replace"))
    except Exception as exc:  # the container went away mid-stream: the wait reports it
        log.debug("log stream ended: %s", exc)


@contextlib.contextmanager
def handover(out: Path, user: str) -> Any:
    """As root, lend the output folder to the container's user, then take it back.

    The container's user cannot write a root-owned folder, and afterwards the host
    (root) should own what the step wrote, like any other file it commits.
    """
    if os.geteuid() != 0:
        yield
        return
    uid, _, gid = user.partition(":")
    os.chown(out, int(uid), int(gid or uid))
    try:
        yield
    finally:
        for root, dirs, files in os.walk(out):
            for name in (*dirs, *files):
                with contextlib.suppress(OSError):
                    os.lchown(os.path.join(root, name), 0, 0)
        os.chown(out, 0, 0)
