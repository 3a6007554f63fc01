"""The graph DB's schema revision, in a module of its own: `GraphRepo` checks it on
every open without importing SQLAlchemy or alembic."""

#: The newest migration (`migrations/versions`): a graph DB at an older revision is
#: upgraded when first opened (tests/test_migrations.py checks the two agree).
SCHEMA_REVISION = "0003"
