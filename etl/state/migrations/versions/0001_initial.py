"""Initial state schema: watermarks, snapshots, links, runs, quarantine, locks, intents.

Revision ID: 0001
Revises:
Create Date: 2026-05-09

Timestamps are ``timestamptz`` on PostgreSQL and naive UTC text on SQLite; JSON is compact text
on both. The table definitions are written out here (not imported from ``models``) so that this
revision keeps meaning the same schema when the models move on.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "watermarks",
        sa.Column("entity", sa.String(), nullable=False),
        sa.Column("system", sa.String(), nullable=False),
        _ts("value", nullable=True),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("entity", "system", name="pk_watermarks"),
    )
    op.create_table(
        "snapshots",
        sa.Column("system", sa.String(), nullable=False),
        sa.Column("entity", sa.String(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("h1", sa.BigInteger(), nullable=False),
        sa.Column("h2", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("natural_key", sa.Text(), nullable=True),
        _ts("source_updated", nullable=True),
        _ts("seen_at"),
        sa.PrimaryKeyConstraint("system", "entity", "key", name="pk_snapshots"),
    )
    op.create_index("ix_snapshots_natural_key", "snapshots", ["system", "entity", "natural_key"])
    op.create_table(
        "links",
        sa.Column("entity", sa.String(), nullable=False),
        sa.Column("crm_key", sa.String(), nullable=False),
        sa.Column("erp_key", sa.String(), nullable=False),
        _ts("created_at"),
        sa.UniqueConstraint("entity", "crm_key", name="uq_links_crm"),
        sa.UniqueConstraint("entity", "erp_key", name="uq_links_erp"),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        _ts("started_at"),
        _ts("finished_at", nullable=True),
        sa.Column("entities", sa.Text(), nullable=False),
        sa.Column("report", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
    )
    op.create_index("ix_runs_started_at", "runs", ["started_at"])
    op.create_table(
        "quarantine",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("entity", sa.String(), nullable=False),
        sa.Column("system", sa.String(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("field", sa.Text(), nullable=True),
        sa.Column("payload", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _ts("first_seen"),
        _ts("last_seen"),
        _ts("next_retry_at"),
        sa.Column("run_id", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_quarantine"),
        sa.UniqueConstraint("entity", "system", "key", name="uq_quarantine_record"),
    )
    op.create_table(
        "locks",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("owner", sa.String(), nullable=False),
        _ts("acquired_at"),
        _ts("expires_at"),
        sa.PrimaryKeyConstraint("name", name="pk_locks"),
    )
    op.create_table(
        "intents",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("entity", sa.String(), nullable=False),
        sa.Column("target_system", sa.String(), nullable=False),
        sa.Column("source_key", sa.String(), nullable=False),
        sa.Column("external_id", sa.String(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_intents"),
        sa.UniqueConstraint("entity", "target_system", "source_key", name="uq_intents_source"),
    )


def downgrade() -> None:
    for table in ("intents", "locks", "quarantine", "runs", "links", "snapshots", "watermarks"):
        op.drop_table(table)
