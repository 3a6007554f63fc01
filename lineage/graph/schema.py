"""Tables of the lineage graph (SQLAlchemy Core, portable across SQLite and PostgreSQL).

Versions are immutable rows; everything that changes over time (aliases, test
results, alias history) lives in its own table so a version row is never updated.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

from lineage.graph.revision import SCHEMA_REVISION
from lineage.records import DERIVATION, DERIVATION_KINDS, EDGE_TYPES, VERSIONING

__all__ = [
    "DERIVATION",
    "DERIVATION_KINDS",
    "EDGE_TYPES",
    "SCHEMA_REVISION",
    "VERSIONING",
    "metadata",
]

metadata = MetaData()


models = Table(
    "models",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("description", Text, nullable=False, default=""),
    Column("tags", JSON, nullable=False, default=list),
    # Promotion policy: automatic (champion moves on a passing cascade) or gated.
    Column("auto_promote", Boolean, nullable=False, default=True),
    Column("require_approval", Boolean, nullable=False, default=False),
    # A version with no applicable test passes the gate only if this says so.
    Column("allow_untested", Boolean, nullable=False, default=False, server_default=false()),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

versions = Table(
    "versions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("model_id", Integer, ForeignKey("models.id"), nullable=False),
    Column("number", Integer, nullable=False),
    # Content-addressed manifest in the object store: tensors, files, encodings.
    Column("manifest_id", String(128), nullable=False),
    Column("kind", String(32), nullable=True),
    Column("recipe_id", String(200), nullable=True),
    Column("recipe_params", JSON, nullable=False, default=dict),
    Column("data_fingerprint", String(128), nullable=True),
    Column("code_version", String(200), nullable=True),
    Column("image_digest", String(200), nullable=True),
    Column("library_versions", JSON, nullable=False, default=dict),
    Column("author", String(200), nullable=False, default=""),
    Column("message", Text, nullable=False, default=""),
    Column("tags", JSON, nullable=False, default=list),
    Column("extra", JSON, nullable=False, default=dict),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("model_id", "number", name="uq_versions_model_number"),
)

edges = Table(
    "edges",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("child_id", Integer, ForeignKey("versions.id"), nullable=False),
    Column("parent_id", Integer, ForeignKey("versions.id"), nullable=False),
    Column("edge_type", String(16), nullable=False),
    Column("kind", String(32), nullable=True),
    # Order of parents as given (a merge's weights follow it).
    Column("position", Integer, nullable=False, default=0),
    UniqueConstraint("child_id", "parent_id", "edge_type", name="uq_edges_child_parent_type"),
)
Index("ix_edges_parent", edges.c.parent_id, edges.c.edge_type)
Index("ix_edges_child", edges.c.child_id, edges.c.edge_type)

aliases = Table(
    "aliases",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("model_id", Integer, ForeignKey("models.id"), nullable=False),
    Column("alias", String(64), nullable=False),
    Column("version_id", Integer, ForeignKey("versions.id"), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("model_id", "alias", name="uq_aliases_model_alias"),
)

alias_events = Table(
    "alias_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("model_id", Integer, ForeignKey("models.id"), nullable=False),
    Column("alias", String(64), nullable=False),
    Column("action", String(32), nullable=False),  # set, promote, rollback, remove
    Column("from_version_id", Integer, ForeignKey("versions.id"), nullable=True),
    Column("to_version_id", Integer, ForeignKey("versions.id"), nullable=True),
    Column("actor", String(200), nullable=False, default=""),
    Column("reason", Text, nullable=False, default=""),
    Column("at", DateTime(timezone=True), nullable=False),
)
Index("ix_alias_events_model", alias_events.c.model_id, alias_events.c.at)

model_tests = Table(
    "model_tests",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("model_id", Integer, ForeignKey("models.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("params", JSON, nullable=False, default=dict),
    # An opt-out row hides an inherited test of the same name from this model down.
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("model_id", "name", name="uq_model_tests_model_name"),
)

test_results = Table(
    "test_results",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("version_id", Integer, ForeignKey("versions.id"), nullable=False),
    Column("test_name", String(200), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("declared_on", String(200), nullable=False, default=""),
    Column("metric", String(64), nullable=False, default=""),
    Column("value", Float, nullable=True),
    Column("threshold", Float, nullable=True),
    Column("passed", Boolean, nullable=False),
    Column("details", JSON, nullable=False, default=dict),
    Column("duration_s", Float, nullable=False, default=0.0),
    Column("ran_at", DateTime(timezone=True), nullable=False),
)
Index("ix_test_results_version", test_results.c.version_id, test_results.c.test_name)

# Idempotent re-derivation: a recipe run on the same parents and data gives the
# same version, so a resumed cascade finds its work here instead of redoing it.
derive_cache = Table(
    "derive_cache",
    metadata,
    Column("key", String(128), primary_key=True),
    Column("version_id", Integer, ForeignKey("versions.id"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# One row per cascade run (written when the cascade flow ends), for the UI and audits:
# the plan and each node's outcome live in `summary` (see lineage.cascade.history).
cascade_runs = Table(
    "cascade_runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("upstream", String(200), nullable=False),
    Column("replaces", String(200), nullable=False, default=""),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("status", String(32), nullable=False),
    Column("flow_run_id", String(64), nullable=True),
    Column("summary", JSON, nullable=False, default=dict),
)
Index("ix_cascade_runs_started", cascade_runs.c.started_at)
