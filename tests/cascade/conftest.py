"""Fixtures for the cascade tests: a real local Prefect server, a served cascade
deployment, and a small model family made with the toy recipes."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import pytest

# Before anything imports Prefect: nothing may leak into ~/.prefect, and nothing may
# try to reach the internet.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="lineage-test-prefect-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY", "false")

from cascade_helpers import HERE, VENV_BIN, child_env

from lineage.testing import free_port, require_service
from lineage.tracking.prefect_server import healthy


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`prefect server start` on a free loopback port, SQLite in a temp dir; yields
    its API URL. Event triggers run on it (the scheduler is not needed)."""
    prefect = VENV_BIN / "prefect"
    require_service(prefect.exists(), f"prefect CLI not found next to {sys.executable}")
    home = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    env = child_env(
        PREFECT_HOME=str(home),
        PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        PREFECT_UI_ENABLED="false",
        PREFECT_SERVER_LOGGING_LEVEL="WARNING",
    )
    log = open(home / "server.log", "wb")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 120
    try:
        while not healthy(url):
            if process.poll() is not None or time.monotonic() > deadline:
                log.flush()
                tail = (home / "server.log").read_text(errors="replace")[-2000:]
                pytest.fail(f"prefect server did not start:\n{tail}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture
def toy_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `toy_recipes:*` importable in this process."""
    monkeypatch.syspath_prepend(str(HERE))


@pytest.fixture(scope="session", autouse=True)
def _quiet_prefect_at_exit() -> Iterator[None]:
    """Prefect stops its ephemeral server from an exit hook and logs that to streams
    pytest has closed by then; silence its logger once the session is over."""
    yield
    import logging

    logging.getLogger("prefect").disabled = True
