"""Fixtures for the UI tests: the demo-shaped family, a running `lineage ui` server, and
one headless Chromium for the session (Debian's `chromium`, driven by Playwright).

Screenshots go to $LINEAGE_UI_SCREENSHOTS when set (CI artifacts; `docs/img` for the
README), else to a temporary folder.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from family import build_demo_family

from lineage.testing import CHROMIUM, CHROMIUM_ARGS, require_service

VIEWPORT = {"width": 1400, "height": 900}


@pytest.fixture(scope="session")
def demo_workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    ws = build_demo_family(tmp_path_factory.mktemp("ui-demo"))
    yield ws
    ws.close()


@pytest.fixture(scope="session")
def ui_url(demo_workspace: Any) -> Iterator[str]:
    """`lineage ui` on the demo family, on a free loopback port."""
    from lineage.ui.server import make_server

    server = make_server(demo_workspace, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.url
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    require_service(sync_playwright is not None, "the playwright package is not installed")
    require_service(
        Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is not None,
        f"Chromium not found at {CHROMIUM} (apt-get install chromium)",
    )
    assert sync_playwright is not None
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@dataclass
class Watched:
    """A page, and what it did: console errors, page errors, requests, dialogs."""

    page: Any
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def foreign_requests(self, origin: str) -> list[str]:
        """Requests to anything but `origin` (scheme://host:port, or a file:// URL)."""
        foreign = []
        for url in self.requests:
            parts = urlsplit(url)
            if parts.scheme == "data":
                continue
            if origin.startswith("file://"):
                if url.split("#")[0] != origin:
                    foreign.append(url)
            elif f"{parts.scheme}://{parts.netloc}" != origin:
                foreign.append(url)
        return foreign


@pytest.fixture
def watched(browser: Any) -> Iterator[Watched]:
    """A fresh browser context and page at 1400x900 that records what happens."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    seen = Watched(page)
    page.on(
        "console",
        lambda message: (
            seen.errors.append(f"console {message.type}: {message.text}")
            if message.type == "error"
            else None
        ),
    )
    page.on("pageerror", lambda error: seen.errors.append(f"page error: {error}"))
    page.on("request", lambda request: seen.requests.append(request.url))

    def on_dialog(dialog: Any) -> None:
        seen.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    yield seen
    context.close()


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wanted = os.environ.get("LINEAGE_UI_SCREENSHOTS")
    folder = Path(wanted) if wanted else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
