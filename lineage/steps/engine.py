"""Connecting to the Docker engine, with one clear error when it is not there.

Shared by the image build (`containers/build.py`) and the docker runner
(`lineage.steps.runners.docker`) so both explain a dead engine the same way. The `docker`
package is imported here, lazily, because the process runner and the rest of lineage
must work on machines that have neither the package nor an engine.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from lineage.errors import RunnerError
from lineage.extras import require_extra

if TYPE_CHECKING:
    from docker import DockerClient

#: Seconds to wait for the engine to answer a ping: a live local engine answers in
#: milliseconds, and a wrong DOCKER_HOST should fail fast rather than hang a cascade.
PING_TIMEOUT_S = 10


class EngineUnavailableError(RunnerError):
    """No Docker engine answers at DOCKER_HOST (or the default socket)."""


def engine_address() -> str:
    """Where the Docker SDK will look for the engine, for error messages."""
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\"()\]]+)")
_CAUSES = ("No such file or directory", "Permission denied", "Connection refused", "timed out")


def _reason(exc: BaseException) -> str:
    """The one cause worth printing from the SDK's nested connection errors."""
    text = str(exc).strip() or type(exc).__name__
    match = _ERRNO.search(text)
    if match:
        return match.group(1).strip()
    for cause in _CAUSES:
        if cause in text:
            return cause
    return text.splitlines()[0][:200]


def connect(timeout_s: float | None = None) -> DockerClient:
    """Return a Docker client whose engine has answered a ping.

    Args:
        timeout_s: read timeout for later API calls (log streams, waits); `None` keeps
            calls open as long as they need, which long steps require.

    Raises:
        EngineUnavailableError: no engine answers.
        MissingExtraError: the [docker] extra (the Docker SDK) is not installed.

    Example (with an engine running)::

        client = connect()
        client.version()["Version"]   # e.g. '20.10.24+dfsg1'
    """
    require_extra("docker", "running steps in containers")
    import docker

    try:
        client = docker.from_env(timeout=PING_TIMEOUT_S)
        client.ping()
    except Exception as exc:
        raise EngineUnavailableError(
            f"Docker engine not reachable at {engine_address()}: {_reason(exc)}"
        ) from exc
    # The ping used a short timeout; steps need their log stream and wait to stay open.
    client.api.timeout = timeout_s if timeout_s is not None else 7 * 24 * 3600
    return client


def engine_available() -> tuple[bool, str]:
    """Whether an engine answers, and if not, why (for skips and `--if-engine`)."""
    try:
        client = connect()
    except EngineUnavailableError as exc:
        return False, str(exc)
    client.close()
    return True, f"Docker engine at {engine_address()}"
