"""Graph semantics through the workspace API, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from lineage.errors import (
    CycleError,
    ModelExistsError,
    ModelNotFoundError,
    UsageError,
    VersionNotFoundError,
    WeightsError,
)
from lineage.graph import schema as t
from lineage.graph.walk import topological_levels, topological_order
from lineage.ops.add import add, commit, link
from lineage.ops.alias import remove_alias, set_alias


def _family(ws, tiny_weights):  # type: ignore[no-untyped-def]
    """base@1 -> ft-a, ft-b; merge(ft-a, ft-b); q(merge); adapter on base."""
    add(ws, "base", source=tiny_weights(0))
    add(ws, "ft-a", source=tiny_weights(1), parents=["base@1"], kind="finetune")
    add(ws, "ft-b", source=tiny_weights(2), parents=["base@1"], kind="finetune")
    add(ws, "soup", source=tiny_weights(3), parents=["ft-a@1", "ft-b@1"], kind="merge")
    add(ws, "soup-int8", source=tiny_weights(4), parents=["soup@1"], kind="quantize")
    add(ws, "adapter", source=tiny_weights(5), parents=["base@1"], kind="adapter")


def test_descendants_topological_with_multi_parent_merge(workspace, tiny_weights) -> None:
    _family(workspace, tiny_weights)
    order = [v.ref for v in workspace.descendants("base@1")]
    assert set(order) == {"ft-a@1", "ft-b@1", "soup@1", "soup-int8@1", "adapter@1"}
    # A merge comes after *all* of its parents, and its child after it.
    assert order.index("soup@1") > order.index("ft-a@1")
    assert order.index("soup@1") > order.index("ft-b@1")
    assert order.index("soup-int8@1") > order.index("soup@1")
    soup = workspace.resolve("soup")
    assert [p.ref for p in soup.derivation_parents] == ["ft-a@1", "ft-b@1"]
    assert soup.kind == "merge"


def test_ancestors_and_path(workspace, tiny_weights) -> None:
    _family(workspace, tiny_weights)
    assert next(v.ref for v in workspace.ancestors("soup-int8@1")) == "base@1"
    assert {v.ref for v in workspace.ancestors("soup-int8@1")} == {
        "base@1",
        "ft-a@1",
        "ft-b@1",
        "soup@1",
    }
    path = workspace.path("base@1", "soup-int8@1")
    assert path is not None and path[0].ref == "base@1" and path[-1].ref == "soup-int8@1"
    assert len(path) == 4
    assert workspace.path("adapter@1", "soup@1") is None


def test_versions_latest_and_versioning_edges(workspace, tiny_weights) -> None:
    _family(workspace, tiny_weights)
    v2 = commit(workspace, "ft-a", source=tiny_weights(11), message="more data")
    assert v2.ref == "ft-a@2"
    assert v2.previous_version is not None and v2.previous_version.ref == "ft-a@1"
    # commit keeps the parents of the previous version by default
    assert [p.ref for p in v2.derivation_parents] == ["base@1"]
    assert v2.kind == "finetune"
    assert workspace.resolve("ft-a").ref == "ft-a@2"
    assert workspace.resolve("ft-a@latest").ref == "ft-a@2"
    assert [v.number for v in workspace.log("ft-a")] == [2, 1]
    # versioning edges are followed only on request
    with_versions = [v.ref for v in workspace.descendants("ft-a@1", include_versions=True)]
    assert "ft-a@2" in with_versions
    assert "ft-a@2" not in [v.ref for v in workspace.descendants("ft-a@1")]


def test_aliases_and_history(workspace, tiny_weights) -> None:
    _family(workspace, tiny_weights)
    commit(workspace, "soup", source=tiny_weights(21))
    set_alias(workspace, "soup@1", "staging", reason="first")
    assert workspace.resolve("soup@staging").ref == "soup@1"
    event = set_alias(workspace, "soup@2", "staging", reason="better")
    assert (event.from_version, event.to_version) == (1, 2)
    assert workspace.resolve("soup@staging").ref == "soup@2"
    assert workspace.model("soup").aliases == {"staging": 2}
    history = workspace.alias_history("soup")
    assert [(e.action, e.from_version, e.to_version, e.reason) for e in history] == [
        ("set", None, 1, "first"),
        ("set", 1, 2, "better"),
    ]
    remove_alias(workspace, "soup", "staging")
    with pytest.raises(VersionNotFoundError):
        workspace.resolve("soup@staging")
    # The serving aliases move only through the test gate.
    for gated in ("champion", "candidate", "previous"):
        with pytest.raises(UsageError, match="lineage promote"):
            set_alias(workspace, "soup@1", gated)
    assert workspace.model("soup").aliases == {}


def test_search_by_kind_and_recipe(workspace, tiny_weights) -> None:
    _family(workspace, tiny_weights)
    assert {v.ref for v in workspace.search(kind="finetune")} == {"ft-a@1", "ft-b@1"}
    assert [v.ref for v in workspace.search(kind="merge")] == ["soup@1"]


def _counts(ws) -> tuple[int, int, int]:  # type: ignore[no-untyped-def]
    with ws.graph.engine.connect() as conn:
        return tuple(  # type: ignore[return-value]
            conn.execute(select(func.count()).select_from(table)).scalar()
            for table in (t.models, t.versions, t.edges)
        )


def _object_files(ws) -> set[str]:  # type: ignore[no-untyped-def]
    root = ws.lineage_dir / "objects"
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_bad_input_leaves_db_and_store_unchanged(workspace, tiny_weights, tmp_path) -> None:
    _family(workspace, tiny_weights)
    before = (_counts(workspace), _object_files(workspace))
    fresh = tiny_weights(99)
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "config.json").write_text("{}")
    bad_calls = [
        (ModelExistsError, lambda: add(workspace, "base", source=fresh)),
        (ModelNotFoundError, lambda: add(workspace, "x", source=fresh, parents=["nope@1"])),
        (VersionNotFoundError, lambda: add(workspace, "x", source=fresh, parents=["base@7"])),
        (CycleError, lambda: add(workspace, "x", source=fresh, parents=["x@1"])),
        (WeightsError, lambda: add(workspace, "x", source=tmp_path / "missing")),
        (WeightsError, lambda: add(workspace, "x", source=empty)),  # no weights in it
        (UsageError, lambda: add(workspace, "x", source=fresh, parents=["base@1"], kind="nope")),
        (UsageError, lambda: add(workspace, "a/b", source=fresh)),
        (UsageError, lambda: add(workspace, "x", source=fresh, parents=["a@@1"])),
        (CycleError, lambda: link(workspace, "base@1", "soup@1")),
        (CycleError, lambda: link(workspace, "base@1", "base@1")),
        (ModelNotFoundError, lambda: commit(workspace, "ghost", source=fresh)),
    ]
    for error, call in bad_calls:
        with pytest.raises(error):
            call()
    assert (_counts(workspace), _object_files(workspace)) == before


def test_pickle_checkpoints_are_refused_unopened(workspace, tmp_path) -> None:
    folder = tmp_path / "pickled"
    folder.mkdir()
    # Not a valid pickle at all: if lineage tried to unpickle it, it would raise
    # something other than WeightsError.
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(WeightsError, match="refusing pickle"):
        add(workspace, "p", source=folder)


def test_link_adds_edge_and_refuses_cycles(workspace, tiny_weights) -> None:
    _family(workspace, tiny_weights)
    linked = link(workspace, "adapter@1", "ft-a@1", kind="distill")
    assert {p.ref for p in linked.derivation_parents} == {"base@1", "ft-a@1"}
    with pytest.raises(CycleError):
        link(workspace, "ft-a@1", "adapter@1")


def test_topological_helpers() -> None:
    edges = [(1, 3), (2, 3), (3, 4), (1, 5)]
    assert topological_order([1, 2, 3, 4, 5], edges) == [1, 2, 3, 4, 5]
    assert topological_levels([1, 2, 3, 4, 5], edges) == [[1, 2], [3, 5], [4]]
    with pytest.raises(ValueError):
        topological_order([1, 2], [(1, 2), (2, 1)])


def test_concurrent_adds_lose_nothing(sqlite_workspace, tiny_weights) -> None:
    """Two processes adding models at once both succeed."""
    import multiprocessing as mp

    ws = sqlite_workspace
    add(ws, "base", source=tiny_weights(0))
    sources = [str(tiny_weights(seed)) for seed in range(1, 7)]
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        pool.starmap(_add_in_process, [(str(ws.root), f"m{i}", s) for i, s in enumerate(sources)])
    names = {m.name for m in ws.models()}
    assert names == {"base", *(f"m{i}" for i in range(6))}
    assert {p.ref for v in ws.descendants("base@1") for p in v.derivation_parents} == {"base@1"}


def _add_in_process(root: str, name: str, source: str) -> None:
    from lineage.workspace import Workspace

    add(Workspace.open(root), name, source=source, parents=["base@1"], kind="finetune")


def test_concurrent_commits_number_versions_without_gaps(workspace, tiny_weights) -> None:
    from concurrent.futures import ThreadPoolExecutor

    add(workspace, "m", source=tiny_weights(0))
    sources = [tiny_weights(seed) for seed in range(1, 7)]
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda s: commit(workspace, "m", source=s), sources))
    assert sorted(v.number for v in workspace.log("m")) == list(range(1, 8))


def test_a_thread_keeps_one_connection_until_it_ends(tmp_path) -> None:
    """Opening a connection (and its pragmas) cost more than most statements: each
    thread keeps one; a thread that ended leaves none open, nor does `close`."""
    import contextlib
    import gc
    import sqlite3
    import threading

    from lineage.graph.db import Database

    db = Database(f"sqlite:///{tmp_path / 'graph.db'}")
    with db.reading() as first, db.reading() as second:
        assert first.raw is second.raw

    def use() -> None:
        with db.reading() as session:
            session.rows("SELECT 1 AS one")

    threads = [threading.Thread(target=use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    gc.collect()
    assert len(db._open) == 1  # this thread's
    # the file replaced under the process (a workspace deleted and made anew): a thread's
    # connection follows the path, as a connection per use did
    with db.writing() as session:
        session.execute("CREATE TABLE old (x INTEGER)")
    for path in tmp_path.glob("graph.db*"):
        path.unlink()
    with contextlib.closing(sqlite3.connect(tmp_path / "graph.db")) as fresh:
        fresh.execute("CREATE TABLE new (x INTEGER)")
    with db.reading() as session:
        assert session.scalars("SELECT name FROM sqlite_master") == ["new"]
    db.close()
    assert len(db._open) == 0
