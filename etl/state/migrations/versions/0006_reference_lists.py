"""Reference lists kept between commands.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03

``reference_lists`` keeps the last copy of each reference list a run read (Omie's sellers,
Ploomes' users...) with the time it was read. A system that refuses an identical read repeated
within a short time (Omie: 60 s) would otherwise make a command started right after another
wait that long for a list the first one has just read.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reference_lists",
        sa.Column("side", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("rows", sa.Text(), nullable=False),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("side", "name", name="pk_reference_lists"),
    )


def downgrade() -> None:
    op.drop_table("reference_lists")
