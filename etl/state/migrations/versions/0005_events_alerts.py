"""Webhook events and alert conditions.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

``events`` keeps every webhook event ``ponte serve`` accepted, stored before it answers 200:
unique per side and vendor event identity, so a redelivery is a no-op. ``alerts`` keeps, per
alert condition, whether it is active and when it started and cleared, so that each condition is
announced once when it starts and once when it clears, not on every run.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("side", sa.String(), nullable=False),
        sa.Column("event_id", sa.String(), nullable=False),
        sa.Column("collection", sa.String(), nullable=True),
        sa.Column("entity", sa.String(), nullable=True),
        sa.Column("key", sa.String(), nullable=True),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("payload", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sa.UniqueConstraint("side", "event_id", name="uq_events_identity"),
    )
    op.create_index("ix_events_status_due", "events", ["status", "due_at"])
    op.create_table(
        "alerts",
        sa.Column("condition", sa.String(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("notified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cleared_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("condition", name="pk_alerts"),
    )


def downgrade() -> None:
    op.drop_table("alerts")
    op.drop_index("ix_events_status_due", "events")
    op.drop_table("events")
