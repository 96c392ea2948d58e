"""Usage records: whether the gateway answered the call from its response cache, the message id and a
detail of the call (admission wait, each attempt); and call_payloads, the requests of organisations that
log them.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Every record written before the cache existed was answered by an upstream: false.
    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(sa.Column("cached", sa.Boolean(), nullable=False, server_default=sa.text("false")))
        batch.add_column(sa.Column("message_id", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("detail", sa.JSON(), nullable=True))
    op.create_index("ix_usage_records_request_id", "usage_records", ["request_id"])
    op.create_index("ix_usage_records_upstream_request_id", "usage_records", ["upstream_request_id"])
    op.create_index("ix_usage_records_message_id", "usage_records", ["message_id"])
    op.create_table(
        "call_payloads",
        sa.Column("request_id", sa.String(length=64), primary_key=True),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("path", sa.String(length=2048), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_call_payloads_created_at", "call_payloads", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_call_payloads_created_at", table_name="call_payloads")
    op.drop_table("call_payloads")
    op.drop_index("ix_usage_records_message_id", table_name="usage_records")
    op.drop_index("ix_usage_records_upstream_request_id", table_name="usage_records")
    op.drop_index("ix_usage_records_request_id", table_name="usage_records")
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("detail")
        batch.drop_column("message_id")
        batch.drop_column("cached")
