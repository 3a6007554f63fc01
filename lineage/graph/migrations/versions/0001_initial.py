"""Initial lineage graph schema.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("auto_promote", sa.Boolean, nullable=False),
        sa.Column("require_approval", sa.Boolean, nullable=False),
        _ts("created_at"),
    )
    op.create_table(
        "versions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("manifest_id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(32), nullable=True),
        sa.Column("recipe_id", sa.String(200), nullable=True),
        sa.Column("recipe_params", sa.JSON, nullable=False),
        sa.Column("data_fingerprint", sa.String(128), nullable=True),
        sa.Column("code_version", sa.String(200), nullable=True),
        sa.Column("image_digest", sa.String(200), nullable=True),
        sa.Column("library_versions", sa.JSON, nullable=False),
        sa.Column("author", sa.String(200), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("extra", sa.JSON, nullable=False),
        _ts("created_at"),
        sa.UniqueConstraint("model_id", "number", name="uq_versions_model_number"),
    )
    op.create_table(
        "edges",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("child_id", sa.Integer, sa.ForeignKey("versions.id"), nullable=False),
        sa.Column("parent_id", sa.Integer, sa.ForeignKey("versions.id"), nullable=False),
        sa.Column("edge_type", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(32), nullable=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.UniqueConstraint(
            "child_id", "parent_id", "edge_type", name="uq_edges_child_parent_type"
        ),
    )
    op.create_index("ix_edges_parent", "edges", ["parent_id", "edge_type"])
    op.create_index("ix_edges_child", "edges", ["child_id", "edge_type"])
    op.create_table(
        "aliases",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), nullable=False),
        sa.Column("alias", sa.String(64), nullable=False),
        sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id"), nullable=False),
        _ts("updated_at"),
        sa.UniqueConstraint("model_id", "alias", name="uq_aliases_model_alias"),
    )
    op.create_table(
        "alias_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), nullable=False),
        sa.Column("alias", sa.String(64), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("from_version_id", sa.Integer, sa.ForeignKey("versions.id"), nullable=True),
        sa.Column("to_version_id", sa.Integer, sa.ForeignKey("versions.id"), nullable=True),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        _ts("at"),
    )
    op.create_index("ix_alias_events_model", "alias_events", ["model_id", "at"])
    op.create_table(
        "model_tests",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False),
        _ts("created_at"),
        sa.UniqueConstraint("model_id", "name", name="uq_model_tests_model_name"),
    )
    op.create_table(
        "test_results",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id"), nullable=False),
        sa.Column("test_name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("declared_on", sa.String(200), nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("value", sa.Float, nullable=True),
        sa.Column("threshold", sa.Float, nullable=True),
        sa.Column("passed", sa.Boolean, nullable=False),
        sa.Column("details", sa.JSON, nullable=False),
        sa.Column("duration_s", sa.Float, nullable=False),
        _ts("ran_at"),
    )
    op.create_index("ix_test_results_version", "test_results", ["version_id", "test_name"])
    op.create_table(
        "derive_cache",
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id"), nullable=False),
        _ts("created_at"),
    )


def downgrade() -> None:
    for table in (
        "derive_cache",
        "test_results",
        "model_tests",
        "alias_events",
        "aliases",
        "edges",
        "versions",
        "models",
    ):
        op.drop_table(table)
