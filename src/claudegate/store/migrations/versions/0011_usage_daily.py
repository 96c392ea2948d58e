"""Usage: daily totals per organisation and model, user or key, so reports over months stay fast.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DIMENSIONS = {"model": "model", "user": "user_id", "key": "key_id"}


def upgrade() -> None:
    op.create_table(
        "usage_daily",
        sa.Column("dimension", sa.String(length=8), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("value", sa.String(length=128), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_creation_input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_read_input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_usd", sa.Numeric(precision=20, scale=10), nullable=False),
        sa.Column("unpriced_requests", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("dimension", "org_id", "day", "value", name=op.f("pk_usage_daily")),
    )
    # The records written before: their totals, in one pass per dimension.
    postgres = op.get_bind().dialect.name == "postgresql"
    day = "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')" if postgres else "substr(created_at, 1, 10)"
    for dimension, column in _DIMENSIONS.items():
        value = f"coalesce(CAST({column} AS VARCHAR), '')"
        op.execute(
            f"""
            INSERT INTO usage_daily (dimension, org_id, day, value, requests, errors, input_tokens,
                output_tokens, cache_creation_input_tokens, cache_read_input_tokens, cost_usd,
                unpriced_requests)
            SELECT '{dimension}', coalesce(org_id, 0), {day}, {value}, count(*),
                sum(CASE WHEN error_type IS NOT NULL OR status >= 400 THEN 1 ELSE 0 END),
                coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0),
                coalesce(sum(cache_creation_input_tokens), 0), coalesce(sum(cache_read_input_tokens), 0),
                coalesce(sum(cost_usd), 0), sum(CASE WHEN cost_usd IS NULL THEN 1 ELSE 0 END)
            FROM usage_records
            GROUP BY coalesce(org_id, 0), {day}, {value}
            """
        )


def downgrade() -> None:
    op.drop_table("usage_daily")
