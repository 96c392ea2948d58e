"""Usage records: what usage reported beyond the token counts (fast mode, data residency, server tools, …).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
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
    # Records written before this column existed reported nothing beyond their tokens: NULL.
    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(sa.Column("usage_details", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("usage_details")
