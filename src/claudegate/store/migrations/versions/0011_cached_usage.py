"""Usage records: whether the gateway answered the call from its response cache.

Revision ID: 0011
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Every record written before the cache existed was answered by an upstream: false.
    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(sa.Column("cached", sa.Boolean(), nullable=False, server_default=sa.text("false")))


def downgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("cached")
