"""Computed fields: facts of the source records, marks of records to compute again, windows.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

``computed_facts`` keeps, per source record (an order), what the aggregations need: the key of
the record it belongs to (its customer), its amount, its date and whether it passes the
source's filter. ``computed_marks`` holds the records whose facts changed since their computed
values were last written; ``computed_windows`` the cutoff each source was last computed with,
so that records whose facts left the window since are computed again.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "computed_facts",
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("link", sa.String(), nullable=True),
        sa.Column("amount", sa.Float(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("counts", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("target", "source", "key", name="pk_computed_facts"),
    )
    op.create_index("ix_computed_facts_link", "computed_facts", ["target", "source", "link"])
    op.create_index("ix_computed_facts_at", "computed_facts", ["target", "source", "at"])
    op.create_table(
        "computed_marks",
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("target", "key", name="pk_computed_marks"),
    )
    op.create_table(
        "computed_windows",
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("cutoff", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("target", "source", name="pk_computed_windows"),
    )


def downgrade() -> None:
    op.drop_table("computed_windows")
    op.drop_table("computed_marks")
    op.drop_index("ix_computed_facts_at", "computed_facts")
    op.drop_index("ix_computed_facts_link", "computed_facts")
    op.drop_table("computed_facts")
