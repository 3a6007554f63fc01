"""Everything the UI shows, read from a workspace: the only module of `lineage.ui`
that talks to lineage itself.

It reads through the public API only (`Workspace` read methods, the graph view of
`lineage.render.view`, `lineage.ops.tests.describe_tests`, `lineage.ops.storage`, and
the cascade records of `lineage.cascade.history`) and returns plain JSON-ready dicts,
so the server and the HTML export never see a record class, a connection or SQL.

- `build_snapshot`: the graph (every version, every edge, which versions make the
  "current family"), each version's test status, the models, the recorded cascades
  and, when asked, storage figures; what the page needs for its first paint.
- `version_detail`: one version's panel (provenance, tests and where each comes from,
  metrics and loss curve, storage, alias history, cascades, links).
- `version_diff`: which tensors changed between two versions, grouped by layer.

A version's status colours its node: `failed` (a test's latest result failed),
`blocked` (the newest version of its model, and the last cascade that reached it could
not re-derive it because a parent failed), `passed` (every applicable test has a
passing latest result), else `untested`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from lineage.render.view import graph_view
from lineage.ui import links

if TYPE_CHECKING:
    from lineage.records import VersionInfo
    from lineage.workspace import Workspace

PASSED, FAILED, UNTESTED, BLOCKED = "passed", "failed", "untested", "blocked"
#: How much of a commit message a graph node carries (the panel shows all of it).
MESSAGE_PREVIEW = 240


# ---------------------------------------------------------------------- the graph
def build_snapshot(
    workspace: Workspace,
    names: list[str] | None = None,
    *,
    statuses: bool = True,
    storage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole graph (or `names`' families) with models, cascades and statuses.

    Test statuses take a few queries per version (`describe_tests`), so the server
    sends the graph first (`statuses=False`) and the statuses after
    (`version_statuses`); `storage` (from `storage_by_ref`) is included when given.
    """
    every = graph_view(workspace, names, all_versions=True).to_dict()
    current = graph_view(workspace, names, all_versions=False).to_dict()
    infos = workspace.versions_by_id([node["id"] for node in every["nodes"]])
    shown_models = {info.model for info in infos}
    models = [m for m in workspace.models() if m.name in shown_models]
    model_tags = {m.name: list(m.tags) for m in models}
    latest = {m.name: m.latest for m in models}
    cascades = cascade_runs(workspace)
    snapshot: dict[str, Any] = {
        "workspace": _workspace_label(workspace),
        "generated_at": datetime.now(UTC).isoformat(),
        "models": [model.to_dict() for model in models],
        "versions": [
            {
                "id": info.id,
                "ref": info.ref,
                "model": info.model,
                "number": info.number,
                "kind": info.kind,
                "recipe": info.recipe_id,
                "tags": sorted(set(info.tags) | set(model_tags.get(info.model, []))),
                "aliases": list(info.aliases),
                "author": info.author,
                "message": info.message[:MESSAGE_PREVIEW],
                "created_at": info.created_at.isoformat(),
                "latest": info.number == latest.get(info.model),
            }
            for info in infos
        ],
        "edges": every["edges"],
        "current": sorted(node["id"] for node in current["nodes"]),
        "cascades": cascades,
        "links": {
            "mlflow": links.mlflow_ui_base(workspace),
            "prefect": links.prefect_ui_base(workspace),
        },
    }
    if statuses:
        snapshot["statuses"] = _statuses(workspace, [info.ref for info in infos], cascades, latest)
    if storage is not None:
        snapshot["storage"] = storage
    return snapshot


def version_statuses(workspace: Workspace, names: list[str] | None = None) -> dict[str, Any]:
    """`{ref: {"status", "tests": counts}}` for every version `build_snapshot` shows."""
    refs = [
        node["ref"] for node in graph_view(workspace, names, all_versions=True).to_dict()["nodes"]
    ]
    latest = {m.name: m.latest for m in workspace.models()}
    return _statuses(workspace, refs, cascade_runs(workspace), latest)


def _statuses(
    workspace: Workspace,
    refs: list[str],
    cascades: list[dict[str, Any]],
    latest: dict[str, int | None],
) -> dict[str, Any]:
    blocked = _blocked_refs(cascades, latest)
    found = {}
    for ref in refs:
        tests = _test_counts(workspace, ref)
        found[ref] = {"status": _status(tests, ref in blocked), "tests": tests}
    return found


def _workspace_label(workspace: Workspace) -> dict[str, str]:
    """Name and graph backend; never the DB URL (it may hold a password)."""
    url = workspace.graph_url
    backend = "PostgreSQL" if url.startswith("postgresql") else url.split(":", 1)[0]
    return {"name": workspace.root.name, "backend": "SQLite" if backend == "sqlite" else backend}


def _test_counts(workspace: Workspace, ref: str) -> dict[str, int]:
    from lineage.ops.tests import describe_tests

    counts = {"total": 0, "passed": 0, "failed": 0, "untested": 0}
    for test in describe_tests(workspace, ref):
        counts["total"] += 1
        latest = test.get("latest")
        if latest is None:
            counts["untested"] += 1
        elif latest["passed"]:
            counts["passed"] += 1
        else:
            counts["failed"] += 1
    return counts


def _status(tests: dict[str, int], blocked: bool) -> str:
    if tests["failed"]:
        return FAILED
    if blocked:
        return BLOCKED
    if tests["total"] and tests["passed"] == tests["total"]:
        return PASSED
    return UNTESTED


def _blocked_refs(cascades: list[dict[str, Any]], latest: dict[str, int | None]) -> set[str]:
    """Newest versions whose model the most recent cascade reaching it left blocked."""
    seen: set[str] = set()
    blocked: set[str] = set()
    for cascade in cascades:  # newest first
        for node in cascade["nodes"]:
            model = node["model"]
            if model in seen:
                continue
            seen.add(model)
            old_ref = node.get("old_ref") or ""
            if node["status"] == BLOCKED and old_ref == f"{model}@{latest.get(model)}":
                blocked.add(old_ref)
    return blocked


# ---------------------------------------------------------------------- cascades
def cascade_runs(workspace: Workspace) -> list[dict[str, Any]]:
    """Recorded cascades, newest first, with each node's outcome."""
    from lineage.cascade.history import list_cascade_runs

    return [record.to_dict() for record in list_cascade_runs(workspace)]


# ---------------------------------------------------------------------- storage
def storage_by_ref(workspace: Workspace) -> dict[str, dict[str, Any]]:
    """Logical and stored bytes and encodings of every version.

    Versions are counted oldest first, so a version's stored bytes are what it added
    to the store (what it shares with earlier versions counts for them).
    """
    from lineage.ops.storage import store_stats

    refs = [info.ref for info in sorted(workspace.search(), key=lambda info: info.id)]
    if not refs:
        empty = {"logical_bytes": 0, "stored_bytes": 0, "objects": 0, "ratio": 0.0}
        return {"versions": {}, "total": {**empty, "encodings": {}}}
    report = store_stats(workspace, refs).to_dict()
    return {"versions": report["versions"], "total": report["total"]}


def version_keys(workspace: Workspace) -> tuple[tuple[int, str], ...]:
    """(id, manifest) of every version: changes exactly when storage figures may."""
    return tuple((info.id, info.manifest_id) for info in workspace.search())


# ---------------------------------------------------------------------- one version
def version_detail(
    workspace: Workspace,
    ref: str,
    *,
    storage: dict[str, dict[str, Any]] | None = None,
    cascades: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Everything the version panel shows about `ref`."""
    from lineage.ops.tests import describe_tests

    info = workspace.resolve(ref)
    extra = dict(info.extra or {})
    cascades = cascade_runs(workspace) if cascades is None else cascades
    involved = _cascades_of(info.ref, cascades)
    return {
        "ref": info.ref,
        "id": info.id,
        "model": info.model,
        "number": info.number,
        "kind": info.kind,
        "aliases": list(info.aliases),
        "provenance": _provenance(info, extra),
        "tests": [_test_row(test) for test in describe_tests(workspace, info.ref)],
        "metrics": extra.get("metrics") or {},
        "loss_curve": _curve(extra.get("loss_curve")),
        "lossy": extra.get("lossy"),
        "storage": (storage or {}).get("versions", {}).get(info.ref),
        "alias_history": [event.to_dict() for event in workspace.alias_history(info.model)],
        "derived": [child.ref for child in workspace.descendants(info.ref)],
        "cascades": involved,
        "links": _links(workspace, info, extra, involved),
    }


def _provenance(info: VersionInfo, extra: dict[str, Any]) -> dict[str, Any]:
    previous = info.previous_version
    return {
        "recipe": info.recipe_id,
        "params": info.recipe_params,
        "parents": [{"ref": p.ref, "kind": p.kind} for p in info.derivation_parents],
        "previous": previous.ref if previous else None,
        "data": extra.get("data"),
        "data_fingerprint": info.data_fingerprint,
        "code_version": info.code_version,
        "image_digest": info.image_digest,
        "library_versions": info.library_versions,
        "author": info.author,
        "message": info.message,
        "created_at": info.created_at.isoformat(),
        "tags": list(info.tags),
        "manifest_id": info.manifest_id,
    }


def _test_row(test: dict[str, Any]) -> dict[str, Any]:
    latest = test.get("latest")
    return {
        "name": test["name"],
        "kind": test["kind"],
        "params": test.get("params") or {},
        "declared_on": test["declared_on"],
        "inherited": bool(test["inherited"]),
        "overrides": list(test.get("overrides") or []),
        "latest": latest,
    }


def _curve(raw: Any) -> list[list[float]]:
    """`[[step, loss], ...]` with numbers only (a stored curve is user-side data)."""
    points = []
    for point in raw or []:
        if (
            isinstance(point, list | tuple)
            and len(point) == 2
            and all(isinstance(v, int | float) for v in point)
        ):
            points.append([float(point[0]), float(point[1])])
    return points


def _cascades_of(ref: str, cascades: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The cascades that made `ref` or re-derived it, with this version's role."""
    found = []
    for cascade in cascades:
        if cascade["upstream"] == ref:
            found.append(_involvement(cascade, "upstream", None))
        for node in cascade["nodes"]:
            if node.get("new_ref") == ref:
                found.append(_involvement(cascade, "made", node))
            elif node.get("old_ref") == ref:
                found.append(_involvement(cascade, "replaced", node))
    return found


def _involvement(cascade: dict[str, Any], role: str, node: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "id": cascade["id"],
        "upstream": cascade["upstream"],
        "replaces": cascade["replaces"],
        "started_at": cascade["started_at"],
        "flow_run_id": cascade["flow_run_id"],
        "role": role,
        "outcome": None if node is None else node["status"],
        "cached": bool(node and node.get("cached")),
    }


def _links(
    workspace: Workspace, info: VersionInfo, extra: dict[str, Any], involved: list[dict[str, Any]]
) -> list[dict[str, str]]:
    found: list[dict[str, str]] = []
    mlflow = links.mlflow_ui_base(workspace)
    if mlflow:
        found.append(
            {
                "label": f"MLflow model version {info.model} v{info.number}",
                "href": links.mlflow_model_version_url(mlflow, info.model, info.number),
            }
        )
        found.append(
            {
                "label": f"MLflow registered model {info.model}",
                "href": links.mlflow_model_url(mlflow, info.model),
            }
        )
    prefect = links.prefect_ui_base(workspace)
    if prefect:
        runs: dict[str, str] = {}
        if extra.get("flow_run_id"):
            runs[str(extra["flow_run_id"])] = "flow run that made it"
        for cascade in involved:
            if cascade["flow_run_id"] and cascade["flow_run_id"] not in runs:
                what = {"made": "made and tested it", "replaced": "re-derived it"}
                runs[cascade["flow_run_id"]] = (
                    f"cascade {cascade['upstream']} ({what.get(cascade['role'], 'its upstream')})"
                )
        for run_id, label in runs.items():
            found.append(
                {"label": f"Prefect: {label}", "href": links.prefect_flow_run_url(prefect, run_id)}
            )
    return found


# ---------------------------------------------------------------------- diff
def version_diff(workspace: Workspace, a: str, b: str) -> dict[str, Any]:
    """What changed from `a` to `b`, tensor by tensor, grouped by layer."""
    from lineage.ops.storage import diff_versions

    ref_a, ref_b = workspace.resolve(a).ref, workspace.resolve(b).ref
    report = diff_versions(workspace, ref_a, ref_b).to_dict()
    return {
        "a": ref_a,
        "b": ref_b,
        "layers": group_by_layer(report["identical"], report["changed"]),
        "changed": len(report["changed"]),
        "identical": len(report["identical"]),
        "added": report["added"],
        "removed": report["removed"],
        "files_added": report["files_added"],
        "files_removed": report["files_removed"],
        "files_changed": report["files_changed"],
        "config": report["config"],
    }


_NUMBER = re.compile(r"(\d+)")


def natural_key(name: str) -> list[Any]:
    """`layer.10` after `layer.2`."""
    return [int(part) if part.isdigit() else part for part in _NUMBER.split(name)]


def layer_of(tensor: str) -> str:
    """The layer a tensor belongs to: its name up to the first numbered part
    (`bert.encoder.layer.3.attention.q.weight` -> `bert.encoder.layer.3`), else up to
    its first part after wrapper prefixes (`bert.embeddings.word_embeddings.weight` ->
    `bert.embeddings`, `classifier.weight` -> `classifier`)."""
    from lineage.store.matching import WRAPPERS  # the store's list of wrapper prefixes

    parts = tensor.split(".")
    skip = 0
    while skip < len(parts) - 1 and parts[skip] in WRAPPERS:
        skip += 1
    for index in range(skip, len(parts) - 1):
        if parts[index].isdigit():
            return ".".join(parts[: index + 1])
    return ".".join(parts[: skip + 1]) if len(parts) > skip + 1 else tensor


def group_by_layer(identical: list[str], changed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tensors in natural order, grouped by layer; a layer's change is its largest."""
    rows: list[dict[str, Any]] = [
        {"name": name, "relative_l2": 0.0, "changed": False} for name in identical
    ]
    rows += [
        {
            "name": change["name"],
            "relative_l2": change["relative_l2"],
            "max_abs": change["max_abs"],
            "changed": True,
        }
        for change in changed
    ]
    layers: dict[str, dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: natural_key(r["name"])):
        layer = layers.setdefault(
            layer_of(row["name"]), {"layer": layer_of(row["name"]), "tensors": []}
        )
        layer["tensors"].append(row)
    for layer in layers.values():
        values = [t["relative_l2"] for t in layer["tensors"] if t["relative_l2"] is not None]
        layer["relative_l2"] = max(values) if values else None
        layer["changed"] = sum(1 for t in layer["tensors"] if t["changed"])
    return list(layers.values())
