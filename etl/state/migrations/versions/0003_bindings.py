"""Bindings: which systems a state database was built with, one row per side.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

A row holds the side's connector kind and normalized base URL (shown in messages) and a salted
scrypt hash of the credential that identifies the account (never the credential itself). A state
used with other systems would pair records of unrelated companies, so every command that reads
or writes checks the configured systems against these rows first.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bindings",
        sa.Column("side", sa.String(), primary_key=True),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("base_url", sa.Text(), nullable=False),
        sa.Column("account_hash", sa.String(), nullable=False),
        sa.Column("salt", sa.String(), nullable=False),
        sa.Column("bound_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("bindings")
