"""The `lineage ui` server without a browser: read-only, strict headers, loopback only
unless asked, clear errors, light imports, and the `lineage ui` command itself."""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lineage.cli.main import app
from lineage.errors import ModelNotFoundError, UsageError
from lineage.ops.add import add
from lineage.testing import write_tiny_weights
from lineage.ui.server import CONTENT_SECURITY_POLICY, make_server
from lineage.workspace import Workspace

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def small_ws(tmp_path: Path) -> Iterator[Workspace]:
    ws = Workspace.init(tmp_path / "ws")
    add(ws, "base", source=write_tiny_weights(tmp_path / "w0", 0))
    add(
        ws, "ft", source=write_tiny_weights(tmp_path / "w1", 1), parents=["base@1"], kind="finetune"
    )
    yield ws
    ws.close()


@pytest.fixture
def served(small_ws: Workspace) -> Iterator[tuple[str, int]]:
    server = make_server(small_ws, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield "127.0.0.1", server.port
    server.shutdown()
    server.server_close()


def request(
    address: tuple[str, int], method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(*address, timeout=30)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_every_answer_carries_a_strict_policy(served: tuple[str, int]) -> None:
    for path in ("/", "/static/app.js", "/static/vendor/dagre.min.js", "/api/graph", "/nope"):
        _, headers, _ = request(served, "GET", path)
        policy = headers["Content-Security-Policy"]
        assert policy == CONTENT_SECURITY_POLICY
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert "http" not in policy and "*" not in policy
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"
    status, headers, body = request(served, "GET", "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    page = body.decode()
    assert "<script>" not in page  # scripts come from files only
    assert re.search(r"\son[a-z]+\s*=", page) is None  # no inline event handlers


def test_it_is_read_only(served: tuple[str, int]) -> None:
    for method in ("POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        status, headers, body = request(served, method, "/api/graph")
        assert status == 405, method
        assert headers["Allow"] == "GET, HEAD"
        assert "read-only" in json.loads(body)["error"]
    status, _, body = request(served, "HEAD", "/api/graph")
    assert status == 200 and body == b""


def test_only_the_app_files_are_served(served: tuple[str, int]) -> None:
    for path in (
        "/static/../server.py",
        "/static/vendor/revendor.sh",
        "/static/%2e%2e/snapshot.py",
        "/etc/passwd",
        "/static/",
    ):
        status, _, body = request(served, "GET", path)
        assert status == 404, path
        assert json.loads(body)["error"].startswith("no such page")


def test_requests_for_another_host_are_refused(served: tuple[str, int]) -> None:
    """A page on another site that rebinds its name to 127.0.0.1 gets nothing."""
    status, _, body = request(served, "GET", "/api/graph", {"Host": "attacker.example"})
    assert status == 403 and json.loads(body) == {"error": "unexpected Host header"}
    port = served[1]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
        assert request(served, "GET", "/api/graph", {"Host": host})[0] == 200


def test_api_errors_are_one_line_json(served: tuple[str, int]) -> None:
    status, _, body = request(served, "GET", "/api/version?ref=nope@1")
    assert status == 404 and json.loads(body) == {"error": "unknown model 'nope'"}
    status, _, body = request(served, "GET", "/api/version?ref=a@@1")
    assert status == 400 and "\n" not in json.loads(body)["error"]
    status, _, body = request(served, "GET", "/api/diff?a=base@1")
    assert status == 400 and json.loads(body)["error"] == "missing query parameter(s): b"


def test_endpoints_answer(served: tuple[str, int]) -> None:
    graph = json.loads(request(served, "GET", "/api/graph")[2])
    assert sorted(v["ref"] for v in graph["versions"]) == ["base@1", "ft@1"]
    assert graph["edges"] == [
        {
            "parent": graph["versions"][0]["id"],
            "child": graph["versions"][1]["id"],
            "edge_type": "derivation",
            "kind": "finetune",
        }
    ]
    statuses = json.loads(request(served, "GET", "/api/status")[2])
    assert statuses["ft@1"] == {
        "status": "untested",
        "tests": {"total": 0, "passed": 0, "failed": 0, "untested": 0},
    }
    storage = json.loads(request(served, "GET", "/api/storage")[2])
    assert set(storage["versions"]) == {"base@1", "ft@1"}
    detail = json.loads(request(served, "GET", "/api/version?ref=ft")[2])
    assert detail["ref"] == "ft@1" and detail["provenance"]["parents"][0]["ref"] == "base@1"
    diff = json.loads(request(served, "GET", "/api/diff?a=base@1&b=ft@1")[2])
    assert diff["changed"] == 2 and diff["identical"] == 1


def test_non_loopback_hosts_need_explicit_consent(small_ws: Workspace) -> None:
    with pytest.raises(UsageError, match="binds to loopback unless --host"):
        make_server(small_ws, host="0.0.0.0", port=0)
    server = make_server(small_ws, host="0.0.0.0", port=0, allow_remote=True)
    try:
        assert server.any_host
    finally:
        server.server_close()
    assert not make_server(small_ws, host="127.0.0.1", port=0).any_host


def test_a_busy_port_is_one_clear_error(small_ws: Workspace) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = CliRunner().invoke(
            app, ["-w", str(small_ws.root), "ui", "--no-browser", "--port", str(port)]
        )
    # (`lineage` maps the error to its exit code and one line on stderr.)
    assert isinstance(result.exception, UsageError) and result.exception.exit_code == 2
    assert f"cannot serve on 127.0.0.1:{port}" in str(result.exception)
    bad = CliRunner().invoke(app, ["-w", str(small_ws.root), "ui", "--port", "70000"])
    assert isinstance(bad.exception, UsageError)
    unknown = CliRunner().invoke(app, ["-w", str(small_ws.root), "ui", "nope", "--port", "0"])
    assert isinstance(unknown.exception, ModelNotFoundError)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def test_lineage_ui_command_serves_the_workspace(small_ws: Workspace) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lineage.cli.main",
            "-w",
            str(small_ws.root),
            "ui",
            "--no-browser",
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("lineage ui: serving "), line
        url = line.split(" at ")[1].split(" ")[0]
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + "api/graph", timeout=30) as response:
            assert len(json.loads(response.read())["versions"]) == 2
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_refusal_of_a_remote_host_through_the_cli(small_ws: Workspace) -> None:
    """`--host` is the explicit consent: the command then binds where it is told."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lineage.cli.main",
            "-w",
            str(small_ws.root),
            "ui",
            "--no-browser",
            "--host",
            "203.0.113.7",
            "--port",
            "0",
        ],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
    )
    # Not an address of this machine: it cannot be bound, and says so in one line.
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "cannot serve on 203.0.113.7" in result.stderr


def test_serving_imports_no_heavy_library(small_ws: Workspace) -> None:
    """The UI reads the workspace without torch, transformers, MLflow or Prefect."""
    script = textwrap.dedent(
        f"""
        import json, sys, threading, time, urllib.request
        sys.argv = ["lineage", "-w", {str(small_ws.root)!r}, "ui", "--no-browser", "--port", "0"]
        import io, contextlib
        out = io.StringIO()
        from lineage.cli.main import main
        def run():
            with contextlib.redirect_stdout(out):
                main()
        threading.Thread(target=run, daemon=True).start()
        while " at " not in out.getvalue():
            time.sleep(0.02)
        url = out.getvalue().split(" at ")[1].split(" ")[0]
        for path in ("", "api/graph", "api/status", "api/storage",
                     "api/version?ref=ft@1", "api/diff?a=base@1&b=ft@1"):
            urllib.request.urlopen(url + path, timeout=60).read()
        heavy = ("torch", "transformers", "mlflow", "prefect")
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in heavy)
        print(json.dumps(loaded), file=sys.__stdout__)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=_env(), timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_the_server_keeps_answering_after_a_bad_request(served: tuple[str, int]) -> None:
    request(served, "GET", "/api/version?ref=" + "x" * 5000)
    assert request(served, "GET", "/api/graph")[0] == 200


def test_the_vendored_layout_library_is_the_recorded_release() -> None:
    """dagre.min.js is what `revendor.sh` fetched from npm, not edited by hand."""
    import hashlib

    from lineage.ui.server import STATIC_DIR

    vendor = STATIC_DIR / "vendor"
    record = json.loads((vendor / "VENDOR.json").read_text())
    shipped = (vendor / record["file"]).read_bytes()
    assert hashlib.sha256(shipped).hexdigest() == record["sha256"]
    assert record["package"] == "@dagrejs/dagre" and record["npm_integrity"].startswith("sha512-")
    assert "Permission is hereby granted" in (vendor / "dagre.LICENSE").read_text()  # MIT
    assert b"sourceMappingURL" not in shipped


def test_the_app_never_parses_strings_as_markup_or_code() -> None:
    """A guard next to the browser test: the app builds every element with
    createElement/textContent; none of the APIs that parse a string appear in it."""
    from lineage.ui.server import STATIC_DIR

    source = (STATIC_DIR / "app.js").read_text()
    for api in (
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
        'setTimeout("',
        "srcdoc",
    ):
        assert api not in source, api
