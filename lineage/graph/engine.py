"""Engines for the graph DB: SQLite (embedded default, WAL mode) or any SQLAlchemy URL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import NullPool

from lineage.extras import require_extra

# Several lineage processes (CLI calls, cascade workers) write the same SQLite file.
# WAL lets readers run during a write; busy_timeout makes writers queue instead of
# failing; BEGIN IMMEDIATE takes the write lock up front so two writers never
# deadlock while upgrading a read lock.
_SQLITE_BUSY_TIMEOUT_MS = 60_000


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def make_engine(url: str) -> Engine:
    """Create an engine for `url` with the settings lineage relies on."""
    if is_sqlite(url):
        engine = create_engine(
            url,
            poolclass=NullPool,
            connect_args={"timeout": _SQLITE_BUSY_TIMEOUT_MS / 1000, "isolation_level": None},
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
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
