"""Alembic environment: the engine is handed in by lineage.graph.migrate."""

from __future__ import annotations

from alembic import context

from lineage.graph.schema import metadata

engine = context.config.attributes["engine"]

with engine.connect() as connection:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # Batch migrations rebuild a table (copy, drop, rename); with foreign keys on,
        # dropping a referenced table fails. The pragma must be set outside any
        # transaction, so on the driver's own (autocommit) connection.
        connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=sqlite,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
    if sqlite:
        connection.connection.driver_connection.execute("PRAGMA foreign_keys=ON")
