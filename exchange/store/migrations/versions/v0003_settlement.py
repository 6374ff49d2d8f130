"""Settlement: the SETTLEMENT ledger account's balance row, settlement references on ledger postings, and
the daily settlement and delivery tables as the core's settlement commands fill them.

`daily_settlements` and `deliveries` were schema only until now (nothing ever wrote a row), so they are
recreated rather than altered: deliveries are keyed by the core's string id `<symbol>/<n>`, and both
tables gain the settlement job's digest.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The ledger's settlement system account (exchange.domain.ledger), frozen here as this revision wrote it.
SETTLEMENT = -3


def upgrade() -> None:
    with op.batch_alter_table("ledger_postings") as batch:
        batch.add_column(sa.Column("settlement_date", sa.Date(), nullable=True))
        batch.add_column(sa.Column("delivery_id", sa.String(length=64), nullable=True))

    op.drop_index(op.f("ix_deliveries_symbol"), table_name="deliveries")
    op.drop_table("deliveries")
    op.drop_table("daily_settlements")
    op.create_table(
        "daily_settlements",
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("settlement_date", sa.Date(), nullable=False),
        sa.Column("price_ticks", sa.BigInteger(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("ts_ns", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["symbol"], ["series.symbol"], name=op.f("fk_daily_settlements_symbol_series")),
        sa.PrimaryKeyConstraint("symbol", "settlement_date", name=op.f("pk_daily_settlements")),
    )
    op.create_table(
        "deliveries",
        sa.Column("delivery_id", sa.String(length=64), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("number", sa.BigInteger(), nullable=False),
        sa.Column("seller_account_id", sa.BigInteger(), nullable=False),
        sa.Column("buyer_account_id", sa.BigInteger(), nullable=False),
        sa.Column("lots", sa.BigInteger(), nullable=False),
        sa.Column("gpus", sa.BigInteger(), nullable=False),
        sa.Column("gpu_hours", sa.BigInteger(), nullable=False),
        sa.Column("fsp_ticks", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("assigned_seq", sa.BigInteger(), nullable=False),
        sa.Column("assigned_ts_ns", sa.BigInteger(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=True),
        sa.Column("effective_micro_gpuh", sa.BigInteger(), nullable=True),
        sa.Column("invoice_micros", sa.BigInteger(), nullable=True),
        sa.Column("damages_micros", sa.BigInteger(), nullable=True),
        sa.Column("defaulted", sa.Boolean(), nullable=True),
        sa.Column("settled_seq", sa.BigInteger(), nullable=True),
        sa.Column("settled_ts_ns", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["buyer_account_id"], ["accounts.account_id"], name=op.f("fk_deliveries_buyer_account_id_accounts")),
        sa.ForeignKeyConstraint(
            ["seller_account_id"], ["accounts.account_id"], name=op.f("fk_deliveries_seller_account_id_accounts")),
        sa.ForeignKeyConstraint(
            ["symbol"], ["series.symbol"], name=op.f("fk_deliveries_symbol_series")),
        sa.PrimaryKeyConstraint("delivery_id", name=op.f("pk_deliveries")),
        sa.UniqueConstraint("symbol", "number", name=op.f("uq_deliveries_symbol_number")),
    )
    op.create_index(op.f("ix_deliveries_buyer_account_id"), "deliveries", ["buyer_account_id"])
    op.create_index(op.f("ix_deliveries_seller_account_id"), "deliveries", ["seller_account_id"])

    balances = sa.table("balances", sa.column("ledger_account", sa.BigInteger()),
                        sa.column("balance_micros", sa.BigInteger()), sa.column("updated_seq", sa.BigInteger()))
    op.bulk_insert(balances, [{"ledger_account": SETTLEMENT, "balance_micros": 0, "updated_seq": 0}])


def downgrade() -> None:
    op.execute(sa.text(f"DELETE FROM balances WHERE ledger_account = {SETTLEMENT}"))
    op.drop_index(op.f("ix_deliveries_seller_account_id"), table_name="deliveries")
    op.drop_index(op.f("ix_deliveries_buyer_account_id"), table_name="deliveries")
    op.drop_table("deliveries")
    op.drop_table("daily_settlements")
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
    with op.batch_alter_table("ledger_postings") as batch:
        batch.drop_column("delivery_id")
        batch.drop_column("settlement_date")
