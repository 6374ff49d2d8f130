"""Indexes for the trader API's reads (orders by series, fills and average prices by order, trades by
time for tickers and candles) and the idempotency-key table.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_orders_account_id_symbol_order_id"), "orders", ["account_id", "symbol", "order_id"])
    op.create_index(op.f("ix_trades_maker_order_id"), "trades", ["maker_order_id"])
    op.create_index(op.f("ix_trades_taker_order_id"), "trades", ["taker_order_id"])
    op.create_index(op.f("ix_trades_symbol_ts_ns"), "trades", ["symbol", "ts_ns"])
    op.create_table(
        "idempotency_keys",
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("idempotency_key", sa.String(length=64), nullable=False),
        sa.Column("request_digest", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("response_body", sa.LargeBinary(), nullable=False),
        sa.Column("created_ts_ns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key_id", "idempotency_key", name=op.f("pk_idempotency_keys")),
    )
    op.create_index(op.f("ix_idempotency_keys_created_ts_ns"), "idempotency_keys", ["created_ts_ns"])


def downgrade() -> None:
    op.drop_index(op.f("ix_idempotency_keys_created_ts_ns"), table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
    op.drop_index(op.f("ix_trades_symbol_ts_ns"), table_name="trades")
    op.drop_index(op.f("ix_trades_taker_order_id"), table_name="trades")
    op.drop_index(op.f("ix_trades_maker_order_id"), table_name="trades")
    op.drop_index(op.f("ix_orders_account_id_symbol_order_id"), table_name="orders")
