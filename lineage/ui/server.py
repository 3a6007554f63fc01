"""The `lineage ui` web server: the static app and read-only JSON endpoints.

Standard library only (`http.server`, one thread per request). It answers GET and
HEAD and nothing else: there is no endpoint that writes. Every response carries a
strict Content-Security-Policy (scripts, styles and requests from this origin only;
no inline script, no other origin), and requests whose `Host` header names another
host are refused, so a web page elsewhere cannot reach the workspace through DNS
rebinding. By default it binds to 127.0.0.1; another address must be asked for
explicitly (`allow_remote`, which `lineage ui --host` sets), since the UI has no login.

Endpoints (all JSON):

- `/api/graph`: versions, edges, models, cascades (`snapshot.build_snapshot`);
- `/api/status`: each version's test status (slower: sent after the graph);
- `/api/storage`: logical and stored bytes per version (cached per set of versions);
- `/api/version?ref=R`: one version's panel;
- `/api/diff?a=R&b=S`: tensors changed between two versions.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import sys
import threading
import traceback
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from lineage.errors import LineageError, NotFoundError, UsageError
from lineage.ui import snapshot

if TYPE_CHECKING:
    from lineage.workspace import Workspace

STATIC_DIR = Path(__file__).parent / "static"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765

#: The app's files, by URL path: nothing else under static/ is served.
STATIC_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/static/app.css": ("app.css", "text/css; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/vendor/dagre.min.js": ("vendor/dagre.min.js", "text/javascript; charset=utf-8"),
}

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and `localhost`."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class UiApp:
    """What the handlers serve: one workspace, read through `lineage.ui.snapshot`."""

    def __init__(self, workspace: Workspace, names: list[str] | None = None) -> None:
        self.workspace = workspace
        self.names = names or None
        self._storage_key: tuple[tuple[int, str], ...] | None = None
        self._storage: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def graph(self) -> dict[str, Any]:
        return snapshot.build_snapshot(self.workspace, self.names, statuses=False)

    def statuses(self) -> dict[str, Any]:
        return snapshot.version_statuses(self.workspace, self.names)

    def storage(self) -> dict[str, Any]:
        """Storage figures, recomputed only when the set of versions changed (a
        version's objects never change, but a new version changes attribution)."""
        key = snapshot.version_keys(self.workspace)
        with self._lock:
            if key != self._storage_key or self._storage is None:
                self._storage = snapshot.storage_by_ref(self.workspace)
                self._storage_key = key
            return self._storage

    def version(self, ref: str) -> dict[str, Any]:
        return snapshot.version_detail(self.workspace, ref, storage=self.storage())

    def diff(self, a: str, b: str) -> dict[str, Any]:
        return snapshot.version_diff(self.workspace, a, b)


class Handler(BaseHTTPRequestHandler):
    server: UiServer

    def version_string(self) -> str:
        return "lineage-ui"

    # ------------------------------------------------------------------ methods
    def do_GET(self) -> None:
        self._respond(head=False)

    def do_HEAD(self) -> None:
        self._respond(head=True)

    def _refuse_method(self) -> None:
        self._send_json(
            HTTPStatus.METHOD_NOT_ALLOWED,
            {"error": "lineage ui is read-only: only GET and HEAD are answered"},
            extra={"Allow": "GET, HEAD"},
        )

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _refuse_method

    # ------------------------------------------------------------------ routing
    def _respond(self, head: bool) -> None:
        if not self._host_allowed():
            self._send_json(HTTPStatus.FORBIDDEN, {"error": "unexpected Host header"}, head=head)
            return
        url = urlsplit(self.path)
        if url.path in STATIC_FILES:
            self._send_static(*STATIC_FILES[url.path], head=head)
            return
        route = API_ROUTES.get(url.path)
        if route is None:
            self._send_json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {url.path}"}, head=head)
            return
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        try:
            body = route(self.server.app, query)
        except NotFoundError as exc:
            self._send_json(HTTPStatus.NOT_FOUND, {"error": _one_line(exc)}, head=head)
        except LineageError as exc:
            self._send_json(HTTPStatus.BAD_REQUEST, {"error": _one_line(exc)}, head=head)
        except Exception as exc:  # a bug: say so in one line, keep serving
            traceback.print_exc(file=sys.stderr)
            message = f"internal error: {type(exc).__name__}: {_one_line(exc)}"
            self._send_json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": message}, head=head)
        else:
            self._send_json(HTTPStatus.OK, body, head=head)

    def _host_allowed(self) -> bool:
        """Only the names this server is reachable by (no DNS-rebinding pages)."""
        host = (self.headers.get("Host") or "").strip().lower()
        return host in self.server.allowed_hosts or self.server.any_host

    # ------------------------------------------------------------------ sending
    def _send_static(self, name: str, content_type: str, *, head: bool) -> None:
        body = (STATIC_DIR / name).read_bytes()
        self._send(HTTPStatus.OK, body, content_type, {"Cache-Control": "no-cache"}, head)

    def _send_json(
        self,
        status: HTTPStatus,
        data: Any,
        *,
        head: bool = False,
        extra: dict[str, str] | None = None,
    ) -> None:
        body = json.dumps(data, default=str, allow_nan=False).encode()
        headers = {"Cache-Control": "no-store", **(extra or {})}
        self._send(status, body, "application/json", headers, head)

    def _send(
        self,
        status: HTTPStatus,
        body: bytes,
        content_type: str,
        headers: dict[str, str],
        head: bool,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in {**SECURITY_HEADERS, **headers}.items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


def _require(query: dict[str, str], *names: str) -> list[str]:
    missing = [name for name in names if not query.get(name)]
    if missing:
        raise UsageError(f"missing query parameter(s): {', '.join(missing)}")
    return [query[name] for name in names]


API_ROUTES: dict[str, Callable[[UiApp, dict[str, str]], Any]] = {
    "/api/graph": lambda app, q: app.graph(),
    "/api/status": lambda app, q: app.statuses(),
    "/api/storage": lambda app, q: app.storage(),
    "/api/version": lambda app, q: app.version(*_require(q, "ref")),
    "/api/diff": lambda app, q: app.diff(*_require(q, "a", "b")),
}


class UiServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, app: UiApp, host: str, port: int, *, verbose: bool = False) -> None:
        self.app = app
        self.verbose = verbose
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.address_family = family
        super().__init__((host, port), Handler)
        bound_port = self.server_address[1]
        self.port = int(bound_port)
        names = {host.lower(), f"[{host.lower()}]"}
        if is_loopback(host):
            names |= {"localhost", "127.0.0.1", "[::1]"}
        self.allowed_hosts = {f"{name}:{self.port}" for name in names}
        # Bound to every interface (asked for explicitly): the page may be reached by
        # any name of this machine, so no Host can be told apart from another.
        self.any_host = host in ("0.0.0.0", "::")

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A browser that navigates away mid-answer closes the socket: not worth a trace.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        host = str(self.server_address[0])
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        if ":" in shown:
            shown = f"[{shown}]"
        return f"http://{shown}:{self.port}/"


def make_server(
    workspace: Workspace,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    allow_remote: bool = False,
    names: list[str] | None = None,
    verbose: bool = False,
) -> UiServer:
    """Bind the UI server (not yet serving: call `serve_forever`).

    Raises:
        UsageError: a non-loopback `host` without `allow_remote`, a bad port, or an
            address that cannot be bound (in use, not on this machine).
    """
    if not 0 <= port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, not {port}")
    if not is_loopback(host) and not allow_remote:
        raise UsageError(
            f"refusing to serve on {host}: lineage ui has no login, so it binds to loopback "
            "unless --host is given explicitly"
        )
    if names:
        for name in names:
            workspace.model(name)  # unknown names fail here, before binding
    try:
        return UiServer(UiApp(workspace, names), host, port, verbose=verbose)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise UsageError(f"cannot serve on {host}:{port}: {reason} (try another --port)") from None
