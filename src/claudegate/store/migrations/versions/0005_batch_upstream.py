"""Message batches: the upstream each batch was created on, so it is always reached there.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21
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
    # Batches recorded before this column existed were made on the preferred upstream of the time: NULL,
    # which the gateway reads as "the preferred upstream", as it always did.
    with op.batch_alter_table("message_batches") as batch:
        batch.add_column(sa.Column("upstream", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("message_batches") as batch:
        batch.drop_column("upstream")
