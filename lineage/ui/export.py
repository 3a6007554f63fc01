"""The UI as one self-contained HTML file (`lineage graph --format html`).

The same page, stylesheet and script as `lineage ui`, inlined, with the data embedded
as JSON (`<script type="application/json" id="lineage-data">`): it opens from
`file://` with no server and no network. Its own Content-Security-Policy (a `<meta>`
tag) allows exactly the inlined script and style, by hash, and nothing from anywhere.

Every version's panel is included; diffs are not (they read weights, which can take
seconds per pair): the diff tab of an export says to run `lineage ui` for them.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from typing import TYPE_CHECKING, Any

from lineage.ui import snapshot
from lineage.ui.server import STATIC_DIR

if TYPE_CHECKING:
    from lineage.workspace import Workspace

_STYLESHEET_TAG = '<link rel="stylesheet" href="static/app.css">'
_LAYOUT_TAG = '<script src="static/vendor/dagre.min.js"></script>'
_APP_TAG = '<script src="static/app.js"></script>'


def export_html(
    workspace: Workspace,
    names: list[str] | None = None,
    *,
    all_versions: bool = False,
    title: str | None = None,
) -> str:
    """The workspace's graph (or `names`' families) with every version's panel."""
    storage = snapshot.storage_by_ref(workspace)
    snap = snapshot.build_snapshot(workspace, names, statuses=True, storage=storage)
    details = {
        version["ref"]: snapshot.version_detail(
            workspace, version["ref"], storage=storage, cascades=snap["cascades"]
        )
        for version in snap["versions"]
    }
    data = {
        "snapshot": snap,
        "details": details,
        "initial": {"mode": "all" if all_versions else "current"},
    }
    return render_page(data, title or f"lineage · {snap['workspace']['name']}")


def html_from_graph(graph: dict[str, Any], title: str = "lineage graph") -> str:
    """A page from a bare graph (`GraphView.to_dict()`: nodes and edges, no workspace at
    hand): the graph without test statuses, panels or cascades."""
    nodes = list(graph["nodes"])
    newest: dict[str, int] = {}
    for node in nodes:
        newest[node["model"]] = max(newest.get(node["model"], 0), node["number"])
    snap = {
        "workspace": {"name": title, "backend": "an exported graph"},
        "generated_at": None,
        "models": [
            {"name": name, "tags": [], "latest": number, "aliases": {}}
            for name, number in sorted(newest.items())
        ],
        "versions": [
            {
                "id": node["id"],
                "ref": node["ref"],
                "model": node["model"],
                "number": node["number"],
                "kind": node["kind"],
                "recipe": node["recipe"],
                "tags": [],
                "aliases": list(node["aliases"]),
                "author": "",
                "message": node["message"],
                "created_at": node["created_at"],
                "latest": node["number"] == newest[node["model"]],
            }
            for node in nodes
        ],
        "edges": list(graph["edges"]),
        "current": [node["id"] for node in nodes],
        "cascades": [],
        "links": {"mlflow": None, "prefect": None},
        "statuses": None,
    }
    return render_page({"snapshot": snap, "details": {}, "initial": {"mode": "all"}}, title)


def _csp_hash(text: str) -> str:
    digest = hashlib.sha256(text.encode()).digest()
    return "'sha256-" + base64.b64encode(digest).decode() + "'"


def _json_for_script(data: Any) -> str:
    """JSON that cannot end its <script> element early, whatever strings it holds."""
    text = json.dumps(data, default=str, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_page(data: dict[str, Any], title: str) -> str:
    """index.html with its stylesheet, scripts and `data` inlined."""
    page = (STATIC_DIR / "index.html").read_text()
    css = (STATIC_DIR / "app.css").read_text()
    layout_js = (STATIC_DIR / "vendor" / "dagre.min.js").read_text()
    app_js = (STATIC_DIR / "app.js").read_text()
    for name, text, closing in (
        ("app.css", css, "</style"),
        ("dagre.min.js", layout_js, "</script"),
        ("app.js", app_js, "</script"),
    ):
        if closing in text.lower():
            raise ValueError(f"{name} contains {closing!r}: it cannot be inlined")
    policy = "; ".join(
        [
            "default-src 'none'",
            f"script-src {_csp_hash(layout_js)} {_csp_hash(app_js)}",
            f"style-src {_csp_hash(css)}",
            "img-src data:",
            "base-uri 'none'",
            "form-action 'none'",
        ]
    )
    replacements = {
        '<meta charset="utf-8">': (
            '<meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{policy}">'
        ),
        "<title>lineage</title>": f"<title>{html.escape(title)}</title>",
        _STYLESHEET_TAG: f"<style>{css}</style>",
        _LAYOUT_TAG: f"<script>{layout_js}</script>",
        _APP_TAG: (
            '<script type="application/json" id="lineage-data">'
            f"{_json_for_script(data)}</script>\n<script>{app_js}</script>"
        ),
    }
    for tag, inline in replacements.items():
        if page.count(tag) != 1:
            raise ValueError(f"index.html should hold {tag!r} exactly once")
        page = page.replace(tag, inline)
    return page
