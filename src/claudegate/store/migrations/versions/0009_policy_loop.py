"""Usage records: the model policy a call named and the tool loop it belongs to. Conversations: the summary
their older turns were compacted into.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # NULL for calls recorded before: they named a model, outside any loop.
    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(sa.Column("policy", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("loop_id", sa.String(length=64), nullable=True))
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(sa.Column("summary", sa.Text(), nullable=True))
        batch.add_column(sa.Column("summary_through", sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("summary_through")
        batch.drop_column("summary")
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("loop_id")
        batch.drop_column("policy")
