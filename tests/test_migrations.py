"""Alembic migrations: the schema they build matches the code, and they upgrade an
existing DB without losing its rows."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select

from lineage.graph import schema as t
from lineage.graph.engine import make_engine
from lineage.graph.migrate import current_revision, downgrade, head_revision, upgrade
from lineage.ops.add import add
from lineage.workspace import Workspace


def _url(tmp_path, graph_url: str) -> str:  # type: ignore[no-untyped-def]
    return graph_url or f"sqlite:///{tmp_path / 'graph.db'}"


def test_migrated_schema_matches_metadata(tmp_path, graph_url) -> None:
    engine = make_engine(_url(tmp_path, graph_url))
    upgrade(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), t.metadata)
    assert diff == []
    assert current_revision(engine) == head_revision()


def test_upgrade_is_idempotent_and_keeps_rows(tmp_path, graph_url, tiny_weights) -> None:
    ws = Workspace.init(tmp_path / "ws", graph_url=graph_url)
    add(ws, "base", source=tiny_weights(0))
    add(ws, "child", source=tiny_weights(1), parents=["base@1"], kind="finetune")
    upgrade(ws.graph.engine)  # again: nothing to do
    reopened = Workspace.open(tmp_path / "ws")
    assert [v.ref for v in reopened.descendants("base@1")] == ["child@1"]
    ws.close()
    reopened.close()


def test_downgrade_then_upgrade_round_trips(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'g.db'}")
    upgrade(engine)
    downgrade(engine, "base")
    assert current_revision(engine) is None
    upgrade(engine)
    with engine.connect() as conn:
        assert conn.execute(select(t.models)).all() == []


def test_code_knows_the_newest_migration() -> None:
    assert head_revision() == t.SCHEMA_REVISION


def test_a_graph_made_by_an_older_lineage_is_upgraded_when_opened(tmp_path, tiny_weights) -> None:
    ws = Workspace.init(tmp_path / "ws")
    add(ws, "base", source=tiny_weights(0))
    ws.close()
    downgrade(ws.graph.engine, "0001")  # as a first-release lineage left it
    ws.close()
    reopened = Workspace.open(tmp_path / "ws")
    assert reopened.model("base").allow_untested is False  # a column added since 0001
    assert current_revision(reopened.graph.engine) == head_revision()
    reopened.close()
