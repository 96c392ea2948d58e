"""Tenant settings: rate limits and concurrency on organisations, users and keys; weights on organisations and
users; a default deadline and a priority on keys.

Every column is nullable and null means the default (no limit, weight 1, no deadline, priority 0), so existing
rows behave as before.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Adding nullable columns is a plain ALTER TABLE … ADD COLUMN on both databases (no table rebuild).
    with op.batch_alter_table("organizations") as batch:
        batch.add_column(sa.Column("requests_per_minute", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("tokens_per_minute", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("max_concurrency", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("weight", sa.Float(), nullable=True))
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("requests_per_minute", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("tokens_per_minute", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("max_concurrency", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("weight", sa.Float(), nullable=True))
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("requests_per_minute", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("tokens_per_minute", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("max_concurrency", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("deadline_ms", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("priority", sa.Integer(), nullable=True))


def downgrade() -> None:
    # ALTER TABLE … DROP COLUMN (SQLite has it since 3.35). Rebuilding the tables instead, batch mode's
    # default on SQLite, would drop organizations and users while other tables' foreign keys point at them.
    limits = ("max_concurrency", "tokens_per_minute", "requests_per_minute")
    with op.batch_alter_table("api_keys", recreate="never") as batch:
        for name in ("priority", "deadline_ms", *limits):
            batch.drop_column(name)
    for table in ("users", "organizations"):
        with op.batch_alter_table(table, recreate="never") as batch:
            for name in ("weight", *limits):
                batch.drop_column(name)
