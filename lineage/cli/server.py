"""`lineage server start`: a local Prefect server and UI, kept running between cascades.

Without a Prefect API, every `lineage cascade` starts Prefect's ephemeral server and
pays its start-up (seconds). A server started once and named in `$PREFECT_API_URL`
(or `[prefect] api_url` in `.lineage/config.toml`) costs nothing per cascade, keeps
the flow runs, and serves the UI.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import typer

from lineage.cli.output import say
from lineage.errors import OrchestrationError, UsageError

server_app = typer.Typer(
    help="A local Prefect server and UI for repeated cascades.", no_args_is_help=True
)

#: How long the server may take to answer its health check (a busy 2-core machine).
STARTUP_TIMEOUT_S = 180.0


def server_command(host: str, port: int) -> list[str]:
    """The Prefect CLI command that runs the server (this interpreter's Prefect)."""
    return [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)]


@server_app.command("start")
def start(
    port: int = typer.Option(4200, "--port", "-p", min=1, max=65535, metavar="PORT"),
    host: str = typer.Option(
        "127.0.0.1",
        "--host",
        metavar="HOST",
        help="Address to listen on (loopback by default: the API has no authentication).",
    ),
) -> None:
    """Run a local Prefect server and UI in the foreground, until Ctrl-C.

    Then, in other shells: `export PREFECT_API_URL=http://HOST:PORT/api` (or set
    `[prefect] api_url` in .lineage/config.toml); `lineage cascade` records its runs
    there and starts nothing. State lives in Prefect's home ($PREFECT_HOME, default
    ~/.prefect).
    """
    # Here, not at the top: every CLI command imports this module.
    from lineage.tracking.prefect_server import healthy, port_free

    if not port_free(host, port):
        raise UsageError(
            f"port {port} on {host} is in use (a server may already run there: "
            f"http://{host}:{port}); pick another with --port"
        )
    api_url = f"http://{host}:{port}/api"
    env = dict(os.environ)
    # lineage never reaches the internet on its own, and neither does its server.
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.pop("PREFECT_API_URL", None)  # the server is the API, not a client of one
    process = subprocess.Popen(server_command(host, port), env=env, cwd=Path.home())
    # `kill` (SIGTERM) stops it as Ctrl-C does: the server goes with it.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        started = time.monotonic()
        while not healthy(api_url):
            if process.poll() is not None:
                raise OrchestrationError(
                    f"the Prefect server exited ({process.returncode}) while starting"
                )
            if time.monotonic() - started > STARTUP_TIMEOUT_S:
                raise OrchestrationError(
                    f"the Prefect server did not answer at {api_url} in {STARTUP_TIMEOUT_S:g} s"
                )
            time.sleep(0.5)
        say(
            f"Prefect server and UI ready at http://{host}:{port} "
            f"(started in {time.monotonic() - started:.1f} s); Ctrl-C stops it. In other shells:",
            stderr=True,
        )
        say(f"  export PREFECT_API_URL={api_url}", stderr=True)
        say("or set `[prefect] api_url` in .lineage/config.toml.", stderr=True)
        process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    if process.returncode not in (0, -signal.SIGINT, 130, None):
        raise typer.Exit(process.returncode)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def register(app: typer.Typer) -> None:
    app.add_typer(server_app, name="server")
