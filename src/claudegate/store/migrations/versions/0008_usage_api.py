"""Usage records: which API the client spoke (``anthropic``, or ``openai`` for translated calls).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Every record made before this column existed came through Anthropic's API.
    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(
            sa.Column("api", sa.String(length=16), nullable=False, server_default=sa.text("'anthropic'"))
        )


def downgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("api")
