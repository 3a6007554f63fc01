"""A local Prefect API server for a cascade when none is configured.

Prefect's own way (`SubprocessASGIServer`, its "ephemeral" server) costs a cascade
seconds it need not pay: the client process first imports the whole server
application (about 2 s of CPU here) only to start it in a subprocess that imports it
again, it starts only when the flow is called, and at exit it waits for the server's
graceful shutdown. `LocalPrefectServer` runs the same server the same way (uvicorn
with Prefect's app factory, UI off, ephemeral services), but without importing
Prefect, so `lineage cascade` starts it first thing, while its workers import torch
and it imports Prefect; and at exit it asks the server to stop without waiting.

Nothing here imports Prefect: `local_server()` is cheap to call from the CLI.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from lineage.errors import OrchestrationError

#: The least start-up time a cascade allows the server (Prefect's default is 20 s; a
#: busy 2-core machine that is also importing torch in the step workers needs more).
STARTUP_TIMEOUT_S = 90.0
#: uvicorn's exit status for any failed start: a port taken meanwhile (then a new port
#: is tried, a few times) or the app's own start-up (a broken database URL: an error).
_STARTUP_FAILED_EXIT = 3
_PORT_RETRIES = 3


def port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def healthy(api_url: str, timeout: float = 2.0) -> bool:
    """Whether a Prefect API answers its health check at `api_url`."""
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _prefect_dir() -> Path:
    spec = importlib.util.find_spec("prefect")
    if spec is None or spec.origin is None:
        raise OrchestrationError("Prefect is not installed here")
    return Path(spec.origin).parent


class LocalPrefectServer:
    """Prefect's API server in a subprocess on a free loopback port (no UI)."""

    HOST = "127.0.0.1"

    def __init__(self, settings_env: dict[str, str] | None = None) -> None:
        self.began = time.perf_counter()
        self.startup_s: float | None = None
        # Prefect settings made in this process (not in its environment or profile).
        self._settings_env = dict(settings_env or {})
        self._respawns = 0
        # The server's output goes to a log: a failed start is one line, naming it.
        self.log_path = Path(
            tempfile.NamedTemporaryFile(  # noqa: SIM115 (the server process writes it)
                prefix="lineage-prefect-server-", suffix=".log", delete=False
            ).name
        )
        self._spawn()

    def _spawn(self) -> None:
        self.port = _free_port(self.HOST)
        env = {**os.environ, **self._settings_env}
        env.pop("PREFECT_API_URL", None)  # the server is the API, not a client of one
        env.update(
            {
                "PREFECT_UI_ENABLED": "0",
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                # As Prefect's own ephemeral server: only the services a run needs.
                "PREFECT__SERVER_EPHEMERAL": "1",
                "PREFECT__SERVER_FINAL": "1",
                # Flows and tasks need no block types: not registering them (nor
                # importing every installed collection to hash them) saves 0.2 s of
                # CPU on a start that shares the cores with the workers' imports. A
                # `prefect server start` on the same database registers them.
                "PREFECT_API_BLOCKS_REGISTER_ON_START": "false",
                "PREFECT_MEMOIZE_BLOCK_AUTO_REGISTRATION": "false",
            }
        )
        with self.log_path.open("ab") as log:  # the child keeps its own copy
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "--app-dir",
                    str(_prefect_dir().parent),
                    "--factory",
                    "prefect.server.api.server:create_app",
                    "--host",
                    self.HOST,
                    "--port",
                    str(self.port),
                    "--log-level",
                    "error",
                    "--lifespan",
                    "on",
                ],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def api_url(self) -> str:
        return f"http://{self.HOST}:{self.port}/api"

    def wait_ready(self, timeout_s: float = STARTUP_TIMEOUT_S) -> float:
        """Block until the API answers; the seconds from spawn to ready."""
        if self.startup_s is not None:
            return self.startup_s
        while not healthy(self.api_url, timeout=1.0):
            status = self.process.poll()
            if (
                status == _STARTUP_FAILED_EXIT
                and not port_free(self.HOST, self.port)
                and self._respawns < _PORT_RETRIES
            ):
                self._respawns += 1
                self._spawn()  # the free port was taken before uvicorn bound it
                continue
            if status is not None:
                raise OrchestrationError(
                    f"the local Prefect server exited ({status}) while starting: "
                    f"{self._last_words()} (its log: {self.log_path})"
                )
            if time.perf_counter() - self.began > timeout_s:
                self.stop()
                raise OrchestrationError(
                    f"the local Prefect server did not answer in {timeout_s:g} s "
                    f"(its log: {self.log_path})"
                )
            time.sleep(0.05)
        self.startup_s = time.perf_counter() - self.began
        return self.startup_s

    def _last_words(self) -> str:
        """The last error-looking line of the server's log (or its last line)."""
        lines = [
            line.strip()
            for line in self.log_path.read_text(errors="replace").splitlines()
            if line.strip()
        ]
        errors = [line for line in lines if "Error" in line.split(":", 1)[0]]
        return (errors or lines or ["no output"])[-1][:300]

    def stop(self) -> None:
        """Ask the server to stop. It finishes its graceful shutdown (flushing what
        clients sent last) on its own: nobody needs to wait for it. The log of a server
        that started goes too (a failed start's log is named in the error)."""
        if self.process.poll() is None:
            self.process.terminate()
        if self.startup_s is not None:
            self.log_path.unlink(missing_ok=True)


_server: LocalPrefectServer | None = None


def local_server(settings_env: dict[str, str] | None = None) -> LocalPrefectServer:
    """This process's local server, started on first call and stopped at exit."""
    global _server
    if _server is None:
        _server = LocalPrefectServer(settings_env)
        atexit.register(_server.stop)
    return _server


def started_server() -> LocalPrefectServer | None:
    """The local server if this process has started one."""
    return _server
