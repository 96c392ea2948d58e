"""Files uploaded through the gateway, with their owners; and the session and agent a call came from.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "uploaded_files",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("key_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("upstream", sa.String(length=128), nullable=True),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name=op.f("fk_uploaded_files_org_id_organizations")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_uploaded_files")),
    )
    op.create_index(
        "ix_uploaded_files_org_id_created_at_id", "uploaded_files", ["org_id", "created_at", "id"]
    )
    # Records written before these columns existed say nothing about sessions or agents: NULL.
    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(sa.Column("session_id", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("agent_id", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("parent_agent_id", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("parent_agent_id")
        batch.drop_column("agent_id")
        batch.drop_column("session_id")
    op.drop_index("ix_uploaded_files_org_id_created_at_id", table_name="uploaded_files")
    op.drop_table("uploaded_files")
