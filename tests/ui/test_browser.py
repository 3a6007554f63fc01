"""`lineage ui` and the HTML export in a real browser (headless Chromium).

One browser for the session; the demo-shaped family (15 versions, a cascade) is made
once with tiny weights. Screenshots of the graph, a version panel and a cascade are
saved (see conftest).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from family import XSS

from lineage.ops.add import add
from lineage.ops.alias import set_alias
from lineage.ops.promote import set_model_policy
from lineage.render.view import graph_view
from lineage.testing import write_tiny_weights

pytestmark = pytest.mark.timeout(300)

READY = "body[data-storage=ready]"


def expect(locator: Any) -> Any:
    # Polls from Python: the page's CSP forbids the eval a JS-side wait would need.
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def _open(watched: Any, url: str) -> Any:
    page = watched.page
    page.goto(url)
    page.wait_for_selector(READY, timeout=60_000)
    return page


def _drawn(page: Any) -> list[str]:
    return sorted(page.eval_on_selector_all(".node", "els => els.map(e => e.dataset.ref)"))


def test_page_loads_clean_and_draws_every_version(
    watched: Any, ui_url: str, demo_workspace: Any, screenshot_dir: Path
) -> None:
    page = _open(watched, ui_url)
    every = sorted(v.ref for v in demo_workspace.search())
    current = {n["ref"] for n in graph_view(demo_workspace, all_versions=False).to_dict()["nodes"]}
    assert _drawn(page) == sorted(current)
    page.screenshot(path=str(screenshot_dir / "ui-graph.png"))
    page.click("#mode-all")
    assert _drawn(page) == every
    # Colour by test status, as the workspace's test results say.
    status = dict(
        page.eval_on_selector_all(".node", "els => els.map(e => [e.dataset.ref, e.dataset.status])")
    )
    assert status["sentiment@2"] == "passed"
    assert status["sentiment-pruned@2"] == "failed"
    assert status["soup@1"] == "blocked"  # its parent failed in the cascade
    assert status["base@1"] == "untested"
    # Edges: labelled by kind, next-version edges dashed.
    labels = page.eval_on_selector_all(".edge-label text", "els => els.map(e => e.textContent)")
    assert {"finetune", "adapter", "distill", "quantize", "prune", "merge", "next"} <= set(labels)
    assert page.locator("path.edge.versioning").count() == 7
    dash = page.eval_on_selector("path.edge.versioning", "e => getComputedStyle(e).strokeDasharray")
    assert dash not in ("", "none")
    # Alias badges.
    badges = page.eval_on_selector_all(
        '.node[data-ref="sentiment-lora@2"] .badge text', "els => els.map(e => e.textContent)"
    )
    assert badges == ["candidate"]
    page.screenshot(path=str(screenshot_dir / "ui-all-versions.png"))
    assert watched.errors == []
    origin = ui_url.rstrip("/")
    assert watched.foreign_requests(origin) == []
    assert len(watched.requests) >= 4  # page, css, two scripts, then the API


def test_clicking_a_version_shows_its_provenance(
    watched: Any, ui_url: str, screenshot_dir: Path
) -> None:
    page = _open(watched, ui_url)
    page.click('.node[data-ref="sentiment@2"]')
    page.wait_for_selector("#version-tests")
    assert page.text_content("#version-ref") == "sentiment@2"

    def row(key: str) -> str:
        return page.text_content(f'#pane-version tr[data-key="{key}"] td:last-child').strip()

    assert row("Recipe") == "finetune"
    assert "steps = 20" in row("Parameters")
    assert row("Parents") == "base@2 finetune"
    assert row("Previous version") == "sentiment@1"
    assert row("Data set") == "sentiment"
    assert row("Code version") == "lineage.recipes.builtin.finetune@1"
    test_row = page.text_content('#version-tests tr[data-test="size"]')
    assert "passed" in test_row and "inherited from base" in test_row
    assert page.locator("#loss-curve path.curve").count() == 1
    assert "stored for" in page.text_content("#version-storage")
    assert "champion → @2" in page.text_content("#alias-history")
    # The selected version's lineage stays lit; the rest is dimmed.
    assert "dim" not in page.get_attribute('.node[data-ref="base@2"]', "class")
    assert "dim" in page.get_attribute('.node[data-ref="topic@2"]', "class")
    page.screenshot(path=str(screenshot_dir / "ui-version-panel.png"))
    # A parent in the panel is a link to its own panel.
    page.click('#pane-version button.ref-link[data-ref="base@2"]')
    expect(page.locator("#version-ref")).to_have_text("base@2")
    assert page.url.endswith("#/version/base%402")
    assert watched.errors == []


def test_an_overriding_test_says_where_it_comes_from(watched: Any, ui_url: str) -> None:
    page = _open(watched, ui_url + "#/version/sentiment-int8%402")
    page.wait_for_selector("#version-tests")
    text = page.text_content('#version-tests tr[data-test="size"]')
    assert "its own model" in text and "overrides base" in text


def test_a_cascade_is_drawn_on_the_graph(watched: Any, ui_url: str, screenshot_dir: Path) -> None:
    page = _open(watched, ui_url)
    page.click('.tabs button[data-tab="cascades"]')
    page.click("#pane-cascades .card[data-cascade]")
    page.wait_for_selector("#cascade-title")
    assert page.text_content("#cascade-title") == "base@1 → base@2"
    outcomes = dict(
        page.eval_on_selector_all(
            "#pane-cascades .node-row", "els => els.map(e => [e.dataset.model, e.dataset.outcome])"
        )
    )
    assert outcomes == {
        "sentiment": "promoted",
        "sentiment-lora": "candidate",
        "topic": "promoted",
        "sentiment-int8": "promoted",
        "sentiment-small": "promoted",
        "sentiment-pruned": "failed",
        "soup": "blocked",
    }
    drawn = dict(
        page.eval_on_selector_all(
            ".node .outcome", "els => els.map(e => [e.closest('.node').dataset.ref, e.textContent])"
        )
    )
    assert drawn["base@2"] == "upstream"
    assert drawn["sentiment@2"] == "promoted"
    assert drawn["sentiment@1"] == "replaced"
    assert drawn["sentiment-pruned@2"] == "failed"
    assert drawn["soup@1"] == "blocked"
    assert "4 promoted" in page.text_content("#cascade-banner")
    page.screenshot(path=str(screenshot_dir / "ui-cascade.png"))
    # Deep link, as the Prefect flow run's link artifact points here.
    page.goto(ui_url + "#/cascade/1")
    page.wait_for_selector("#cascade-title")
    assert watched.errors == []


def test_diff_shows_changed_tensors_by_layer(watched: Any, ui_url: str) -> None:
    page = _open(watched, ui_url + "#/diff/sentiment%401/sentiment%402")
    page.wait_for_selector("#diff-strip .cell")
    assert page.text_content("#diff-changed") == "2"
    titles = page.eval_on_selector_all("#diff-strip .cell", "els => els.map(e => e.title)")
    assert any(title.startswith("layer.0.weight: relative L2") for title in titles)
    assert "layer.0.bias: unchanged" in titles
    assert watched.errors == []


def test_search_highlights_and_collapse_hides_a_subtree(watched: Any, ui_url: str) -> None:
    page = _open(watched, ui_url)
    page.fill("#search", "prune")
    matched = page.eval_on_selector_all(".node.match", "els => els.map(e => e.dataset.ref)")
    assert sorted(matched) == ["sentiment-pruned@1", "sentiment-pruned@2"]
    assert page.text_content("#search-count") == "2 found"
    page.fill("#search", "")
    before = set(_drawn(page))
    page.hover('.node[data-ref="sentiment@2"]')
    page.click('.node[data-ref="sentiment@2"] .toggle')
    after = set(_drawn(page))
    # sentiment-pruned@2 stays: it is also the next version of sentiment-pruned@1.
    assert before - after == {"sentiment-int8@2", "sentiment-small@2"}
    assert page.text_content('.node[data-ref="sentiment@2"] .toggle text') == "+2"
    page.click('.node[data-ref="sentiment@2"] .toggle')
    assert set(_drawn(page)) == before
    assert watched.errors == []


def test_pan_and_zoom(watched: Any, ui_url: str) -> None:
    page = _open(watched, ui_url)
    before = page.get_attribute("#viewport", "transform")
    page.mouse.move(500, 400)
    page.mouse.wheel(0, -400)
    zoomed = page.get_attribute("#viewport", "transform")
    assert zoomed != before
    page.mouse.move(300, 700)
    page.mouse.down()
    page.mouse.move(420, 640, steps=5)
    page.mouse.up()
    assert page.get_attribute("#viewport", "transform") != zoomed


def test_user_strings_are_shown_as_text_and_run_nothing(
    watched: Any, browser: Any, tmp_path: Path
) -> None:
    from lineage.ui.server import make_server
    from lineage.workspace import Workspace

    ws = Workspace.init(tmp_path / "ws")
    add(
        ws,
        "base",
        source=write_tiny_weights(tmp_path / "w0", 0),
        message=XSS,
        tags=[XSS, "<script>alert(2)</script>"],
    )
    add(
        ws,
        "child",
        source=write_tiny_weights(tmp_path / "w1", 1),
        parents=["base@1"],
        kind="finetune",
        message='"><svg onload=alert(3)>',
    )
    set_model_policy(ws, "base", description=XSS)
    set_alias(ws, "base@1", "staging", reason="<b onmouseover=alert(4)>why</b>")
    server = make_server(ws, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        page = _open(watched, server.url + "#/version/base%401")
        page.wait_for_selector("#version-message")
        assert page.text_content("#version-message") == XSS
        assert XSS in page.text_content('#pane-version tr[data-key="Tags"]')
        assert "<b onmouseover=alert(4)>why</b>" in page.text_content("#alias-history")
        page.click('.node[data-ref="child@1"]')
        expect(page.locator("#version-ref")).to_have_text("child@1")
        assert page.text_content("#version-message") == '"><svg onload=alert(3)>'
        page.fill("#search", "<script>")
        page.click('.tabs button[data-tab="overview"]')
        assert XSS in page.text_content("#models")
        # Nothing ran: no dialog, no element made from the strings, no request to "x".
        assert watched.dialogs == []
        assert page.locator("img").count() == 0
        assert page.locator("[onerror], [onload], [onmouseover]").count() == 0
        assert page.locator("script").count() == 2  # the layout library and the app
        assert not any(url.endswith("/x") for url in watched.requests)
        assert watched.errors == []
    finally:
        server.shutdown()
        server.server_close()
        ws.close()


def test_html_export_works_from_file(
    watched: Any, demo_workspace: Any, tmp_path: Path, screenshot_dir: Path
) -> None:
    from typer.testing import CliRunner

    from lineage.cli.main import app

    out = tmp_path / "family.html"
    result = CliRunner().invoke(
        app, ["-w", str(demo_workspace.root), "graph", "--format", "html", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    page = watched.page
    page.goto(out.as_uri())
    page.wait_for_selector(READY, timeout=60_000)
    current = {n["ref"] for n in graph_view(demo_workspace, all_versions=False).to_dict()["nodes"]}
    assert _drawn(page) == sorted(current)
    page.click('.node[data-ref="soup@1"]')
    page.wait_for_selector("#version-tests")
    assert page.text_content("#version-ref") == "soup@1"
    assert "merge" in page.text_content('#pane-version tr[data-key="Parents"]')
    page.click('.tabs button[data-tab="cascades"]')
    page.click("#pane-cascades .card[data-cascade]")
    assert page.text_content("#cascade-title") == "base@1 → base@2"
    page.screenshot(path=str(screenshot_dir / "ui-export.png"))
    assert watched.errors == []
    assert watched.foreign_requests(out.as_uri()) == []


def test_an_empty_workspace_says_what_to_do(watched: Any, tmp_path: Path) -> None:
    from lineage.ui.server import make_server
    from lineage.workspace import Workspace

    ws = Workspace.init(tmp_path / "ws")
    server = make_server(ws, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        page = _open(watched, server.url)
        assert page.is_visible("#empty")
        assert "lineage add" in page.text_content("#empty")
        assert "Nothing stored yet." in page.text_content("#pane-overview")
        assert watched.errors == []
    finally:
        server.shutdown()
        server.server_close()
        ws.close()
