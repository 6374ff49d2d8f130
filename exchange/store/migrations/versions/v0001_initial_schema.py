"""Initial schema: accounts, API keys, series, orders, trades, positions, ledger postings, balances,
daily settlements, deliveries and the projector's state.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The ledger's system accounts (exchange.domain.ledger), frozen here as this revision wrote them.
EXTERNAL, FEES = -1, -2


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("account_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_seq", sa.BigInteger(), nullable=False),
        sa.Column("created_ts_ns", sa.BigInteger(), nullable=False),
        sa.Column("updated_seq", sa.BigInteger(), nullable=False),
        sa.Column("updated_ts_ns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_accounts")),
    )
    op.create_table(
        "balances",
        sa.Column("ledger_account", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("balance_micros", sa.BigInteger(), nullable=False),
        sa.Column("updated_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("ledger_account", name=op.f("pk_balances")),
    )
    op.create_table(
        "ledger_postings",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("leg", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("ts_ns", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("from_account", sa.BigInteger(), nullable=False),
        sa.Column("to_account", sa.BigInteger(), nullable=False),
        sa.Column("amount_micros", sa.BigInteger(), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=True),
        sa.Column("trade_id", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("seq", "leg", name=op.f("pk_ledger_postings")),
    )
    op.create_index(op.f("ix_ledger_postings_from_account_seq"), "ledger_postings", ["from_account", "seq"])
    op.create_index(op.f("ix_ledger_postings_to_account_seq"), "ledger_postings", ["to_account", "seq"])
    op.create_table(
        "projector_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_event_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_ts_ns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_projector_state")),
    )
    op.create_table(
        "series",
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("product", sa.String(length=32), nullable=False),
        sa.Column("generation", sa.String(length=32), nullable=False),
        sa.Column("mfu_grade", sa.Numeric(precision=6, scale=4), nullable=False),
        sa.Column("period", sa.String(length=16), nullable=False),
        sa.Column("gpus_per_lot", sa.BigInteger(), nullable=False),
        sa.Column("delivery_start_ns", sa.BigInteger(), nullable=False),
        sa.Column("delivery_end_ns", sa.BigInteger(), nullable=False),
        sa.Column("trading_end_ns", sa.BigInteger(), nullable=False),
        sa.Column("tick_micros", sa.BigInteger(), nullable=False),
        sa.Column("reference_price_ticks", sa.BigInteger(), nullable=False),
        sa.Column("price_band_ppm", sa.BigInteger(), nullable=False),
        sa.Column("max_order_lots", sa.BigInteger(), nullable=False),
        sa.Column("max_position_lots", sa.BigInteger(), nullable=False),
        sa.Column("initial_margin_ppm", sa.BigInteger(), nullable=False),
        sa.Column("taker_fee_ppm", sa.BigInteger(), nullable=False),
        sa.Column("maker_fee_ppm", sa.BigInteger(), nullable=False),
        sa.Column("halted", sa.Boolean(), nullable=False),
        sa.Column("terminated", sa.Boolean(), nullable=False),
        sa.Column("listed_seq", sa.BigInteger(), nullable=False),
        sa.Column("listed_ts_ns", sa.BigInteger(), nullable=False),
        sa.Column("updated_seq", sa.BigInteger(), nullable=False),
        sa.Column("updated_ts_ns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("symbol", name=op.f("pk_series")),
    )
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("hash_params", sa.String(length=64), nullable=False),
        sa.Column("salt", sa.LargeBinary(length=32), nullable=False),
        sa.Column("secret_hash", sa.LargeBinary(length=64), nullable=False),
        sa.Column("scopes", sa.String(length=256), nullable=False),
        sa.Column("created_ts_ns", sa.BigInteger(), nullable=False),
        sa.Column("revoked_ts_ns", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.account_id"], name=op.f("fk_api_keys_account_id_accounts")),
        sa.PrimaryKeyConstraint("key_id", name=op.f("pk_api_keys")),
    )
    op.create_index(op.f("ix_api_keys_account_id"), "api_keys", ["account_id"])
    op.create_table(
        "daily_settlements",
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("settlement_date", sa.Date(), nullable=False),
        sa.Column("price_ticks", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("ts_ns", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["symbol"], ["series.symbol"], name=op.f("fk_daily_settlements_symbol_series")),
        sa.PrimaryKeyConstraint("symbol", "settlement_date", name=op.f("pk_daily_settlements")),
    )
    op.create_table(
        "deliveries",
        sa.Column("delivery_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("seller_account_id", sa.BigInteger(), nullable=False),
        sa.Column("buyer_account_id", sa.BigInteger(), nullable=False),
        sa.Column("lots", sa.BigInteger(), nullable=False),
        sa.Column("gpu_hours", sa.BigInteger(), nullable=False),
        sa.Column("delivered_gpu_hours", sa.BigInteger(), nullable=True),
        sa.Column("price_ticks", sa.BigInteger(), nullable=False),
        sa.Column("adjustment_micros", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("ts_ns", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["buyer_account_id"], ["accounts.account_id"], name=op.f("fk_deliveries_buyer_account_id_accounts")),
        sa.ForeignKeyConstraint(
            ["seller_account_id"], ["accounts.account_id"], name=op.f("fk_deliveries_seller_account_id_accounts")),
        sa.ForeignKeyConstraint(
            ["symbol"], ["series.symbol"], name=op.f("fk_deliveries_symbol_series")),
        sa.PrimaryKeyConstraint("delivery_id", name=op.f("pk_deliveries")),
    )
    op.create_index(op.f("ix_deliveries_symbol"), "deliveries", ["symbol"])
    op.create_table(
        "orders",
        sa.Column("order_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("side", sa.String(length=16), nullable=False),
        sa.Column("order_type", sa.String(length=16), nullable=False),
        sa.Column("price_ticks", sa.BigInteger(), nullable=True),
        sa.Column("qty_lots", sa.BigInteger(), nullable=False),
        sa.Column("remaining_lots", sa.BigInteger(), nullable=False),
        sa.Column("filled_lots", sa.BigInteger(), nullable=False),
        sa.Column("cancelled_lots", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("cancel_reason", sa.String(length=32), nullable=True),
        sa.Column("tif", sa.String(length=16), nullable=False),
        sa.Column("post_only", sa.Boolean(), nullable=False),
        sa.Column("stp", sa.String(length=16), nullable=False),
        sa.Column("client_order_id", sa.String(length=64), nullable=True),
        sa.Column("expire_ts_ns", sa.BigInteger(), nullable=True),
        sa.Column("created_seq", sa.BigInteger(), nullable=False),
        sa.Column("created_ts_ns", sa.BigInteger(), nullable=False),
        sa.Column("updated_seq", sa.BigInteger(), nullable=False),
        sa.Column("updated_ts_ns", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.account_id"], name=op.f("fk_orders_account_id_accounts")),
        sa.ForeignKeyConstraint(
            ["symbol"], ["series.symbol"], name=op.f("fk_orders_symbol_series")),
        sa.PrimaryKeyConstraint("order_id", name=op.f("pk_orders")),
        sa.UniqueConstraint("account_id", "client_order_id", name=op.f("uq_orders_account_id_client_order_id")),
    )
    op.create_index(op.f("ix_orders_account_id_order_id"), "orders", ["account_id", "order_id"])
    op.create_index(op.f("ix_orders_account_id_status"), "orders", ["account_id", "status"])
    op.create_table(
        "positions",
        sa.Column("account_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("position_lots", sa.BigInteger(), nullable=False),
        sa.Column("entry_cost_ticks", sa.BigInteger(), nullable=False),
        sa.Column("updated_seq", sa.BigInteger(), nullable=False),
        sa.Column("updated_ts_ns", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.account_id"], name=op.f("fk_positions_account_id_accounts")),
        sa.ForeignKeyConstraint(
            ["symbol"], ["series.symbol"], name=op.f("fk_positions_symbol_series")),
        sa.PrimaryKeyConstraint("account_id", "symbol", name=op.f("pk_positions")),
    )
    op.create_table(
        "trades",
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("trade_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("ts_ns", sa.BigInteger(), nullable=False),
        sa.Column("price_ticks", sa.BigInteger(), nullable=False),
        sa.Column("qty_lots", sa.BigInteger(), nullable=False),
        sa.Column("aggressor_side", sa.String(length=16), nullable=False),
        sa.Column("maker_order_id", sa.BigInteger(), nullable=False),
        sa.Column("maker_account_id", sa.BigInteger(), nullable=False),
        sa.Column("taker_order_id", sa.BigInteger(), nullable=False),
        sa.Column("taker_account_id", sa.BigInteger(), nullable=False),
        sa.Column("maker_fee_micros", sa.BigInteger(), nullable=False),
        sa.Column("taker_fee_micros", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["symbol"], ["series.symbol"], name=op.f("fk_trades_symbol_series")),
        sa.PrimaryKeyConstraint("symbol", "trade_id", name=op.f("pk_trades")),
    )
    op.create_index(op.f("ix_trades_maker_account_id_seq"), "trades", ["maker_account_id", "seq"])
    op.create_index(op.f("ix_trades_seq"), "trades", ["seq"])
    op.create_index(op.f("ix_trades_taker_account_id_seq"), "trades", ["taker_account_id", "seq"])

    balances = sa.table("balances", sa.column("ledger_account", sa.BigInteger()),
                        sa.column("balance_micros", sa.BigInteger()), sa.column("updated_seq", sa.BigInteger()))
    op.bulk_insert(balances, [{"ledger_account": EXTERNAL, "balance_micros": 0, "updated_seq": 0},
                              {"ledger_account": FEES, "balance_micros": 0, "updated_seq": 0}])
    state = sa.table("projector_state", sa.column("id", sa.Integer()), sa.column("last_seq", sa.BigInteger()),
                     sa.column("last_event_seq", sa.BigInteger()), sa.column("last_ts_ns", sa.BigInteger()))
    op.bulk_insert(state, [{"id": 1, "last_seq": 0, "last_event_seq": 0, "last_ts_ns": 0}])


def downgrade() -> None:
    op.drop_table("trades")
    op.drop_table("positions")
    op.drop_table("orders")
    op.drop_table("deliveries")
    op.drop_table("daily_settlements")
    op.drop_table("api_keys")
    op.drop_table("series")
    op.drop_table("projector_state")
    op.drop_table("ledger_postings")
    op.drop_table("balances")
    op.drop_table("accounts")
