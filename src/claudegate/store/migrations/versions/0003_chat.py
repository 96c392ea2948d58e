"""Chat: conversations and their messages, prompt versions, budgets on organisations and users, and keys that
may act for end users.

Every new column is nullable and null means the default (no budget cap; a key that may not act for end
users), so existing rows behave as before.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BUDGETS = ("budget_daily_tokens", "budget_monthly_tokens", "budget_daily_usd", "budget_monthly_usd")


def upgrade() -> None:
    for table in ("organizations", "users"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("budget_daily_tokens", sa.BigInteger(), nullable=True))
            batch.add_column(sa.Column("budget_monthly_tokens", sa.BigInteger(), nullable=True))
            batch.add_column(sa.Column("budget_daily_usd", sa.Numeric(20, 6), nullable=True))
            batch.add_column(sa.Column("budget_monthly_usd", sa.Numeric(20, 6), nullable=True))
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("act_for_users", sa.Boolean(), nullable=True))

    op.create_table(
        "prompts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("active_version", sa.Integer(), nullable=True),
        sa.Column("previous_version", sa.Integer(), nullable=True),
        sa.Column("split", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name=op.f("fk_prompts_org_id_organizations")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prompts")),
        sa.UniqueConstraint("org_id", "name", name=op.f("uq_prompts_org_id_name")),
    )
    op.create_table(
        "prompt_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("prompt_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("system", sa.Text(), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=True),
        sa.Column("note", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["prompt_id"], ["prompts.id"], name=op.f("fk_prompt_versions_prompt_id_prompts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prompt_versions")),
        sa.UniqueConstraint("prompt_id", "version", name=op.f("uq_prompt_versions_prompt_id_version")),
    )
    op.create_table(
        "conversations",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("key_id", sa.Integer(), nullable=True),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("prompt_version_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name=op.f("fk_conversations_org_id_organizations")
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_conversations_user_id_users")),
        sa.ForeignKeyConstraint(
            ["prompt_version_id"],
            ["prompt_versions.id"],
            name=op.f("fk_conversations_prompt_version_id_prompt_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversations")),
    )
    op.create_index("ix_conversations_org_id_created_at_id", "conversations", ["org_id", "created_at", "id"])
    op.create_index(
        "ix_conversations_org_id_user_id_created_at", "conversations", ["org_id", "user_id", "created_at"]
    )
    op.create_index("ix_conversations_prompt_version_id", "conversations", ["prompt_version_id"])
    op.create_table(
        "chat_messages",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("conversation_id", sa.String(length=40), nullable=False),
        sa.Column("parent_id", sa.String(length=40), nullable=True),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("content", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("tokens", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=True),
        sa.Column("stop_reason", sa.String(length=64), nullable=True),
        sa.Column("input_tokens", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("output_tokens", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("cache_creation_input_tokens", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("cache_read_input_tokens", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("cost_usd", sa.Numeric(20, 10), nullable=True),
        sa.Column("error_type", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.String(length=1000), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_chat_messages_conversation_id_conversations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chat_messages")),
    )
    op.create_index(
        "ix_chat_messages_conversation_id_created_at_id",
        "chat_messages",
        ["conversation_id", "created_at", "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_chat_messages_conversation_id_created_at_id", table_name="chat_messages")
    op.drop_table("chat_messages")
    op.drop_index("ix_conversations_prompt_version_id", table_name="conversations")
    op.drop_index("ix_conversations_org_id_user_id_created_at", table_name="conversations")
    op.drop_index("ix_conversations_org_id_created_at_id", table_name="conversations")
    op.drop_table("conversations")
    op.drop_table("prompt_versions")
    op.drop_table("prompts")
    # ALTER TABLE … DROP COLUMN, as in 0002: rebuilding these tables would break the foreign keys into them.
    with op.batch_alter_table("api_keys", recreate="never") as batch:
        batch.drop_column("act_for_users")
    for table in ("users", "organizations"):
        with op.batch_alter_table(table, recreate="never") as batch:
            for name in reversed(_BUDGETS):
                batch.drop_column(name)
