"""Cascade runs: one row per cascade, with its plan and each node's outcome.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cascade_runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("upstream", sa.String(200), nullable=False),
        sa.Column("replaces", sa.String(200), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("flow_run_id", sa.String(64), nullable=True),
        sa.Column("summary", sa.JSON, nullable=False),
    )
    op.create_index("ix_cascade_runs_started", "cascade_runs", ["started_at"])


def downgrade() -> None:
    op.drop_index("ix_cascade_runs_started", table_name="cascade_runs")
    op.drop_table("cascade_runs")
