"""SQLAlchemy engines on the graph DB, for migrations (alembic) and direct inspection.

Everyday reads and writes go through `lineage.graph.db` on the drivers themselves;
this engine applies the same connection settings (`SQLITE_PRAGMAS`, the busy timeout,
`BEGIN IMMEDIATE`), so both see the DB the same way.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import NullPool

from lineage.extras import require_extra
from lineage.graph.db import SQLITE_BUSY_TIMEOUT_MS, SQLITE_PRAGMAS, is_sqlite


def make_engine(url: str) -> Engine:
    """Create an engine for `url` with the settings lineage relies on."""
    if is_sqlite(url):
        engine = create_engine(
            url,
            poolclass=NullPool,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "isolation_level": None},
        )
        _configure_sqlite(engine)
        return engine
    if url.startswith("postgresql"):
        require_extra("postgres", "a PostgreSQL graph DB")
    if url.startswith("postgresql://"):
        # psycopg 3 is the driver we ship; the bare scheme would ask for psycopg2.
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
