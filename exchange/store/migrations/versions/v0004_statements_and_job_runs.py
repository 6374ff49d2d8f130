"""Statements of record in the store (served over REST) and the scheduler's job runs; a client order id
is no longer unique per account (the core forgets it 24 h after its order closed, so it may be used
again): the unique constraint becomes an index.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.drop_constraint(op.f("uq_orders_account_id_client_order_id"), type_="unique")
        batch.create_index(op.f("ix_orders_account_id_client_order_id"), ["account_id", "client_order_id"])
    op.create_table(
        "statements",
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("ref", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("date_ns", sa.BigInteger(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("written_ts_ns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "ref", "account_id", name=op.f("pk_statements")),
    )
    op.create_index(op.f("ix_statements_account_id_date_ns"), "statements", ["account_id", "date_ns"])
    op.create_table(
        "statement_sets",
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("ref", sa.String(length=64), nullable=False),
        sa.Column("statements", sa.BigInteger(), nullable=False),
        sa.Column("written_ts_ns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "ref", name=op.f("pk_statement_sets")),
    )
    op.create_table(
        "job_runs",
        sa.Column("run_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("job_key", sa.String(length=128), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("started_ts_ns", sa.BigInteger(), nullable=False),
        sa.Column("finished_ts_ns", sa.BigInteger(), nullable=True),
        sa.Column("progress_done", sa.BigInteger(), nullable=False),
        sa.Column("progress_total", sa.BigInteger(), nullable=True),
        sa.Column("counts", sa.String(length=4000), nullable=False),
        sa.Column("error", sa.String(length=4000), nullable=True),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_job_runs")),
    )
    op.create_index(op.f("ix_job_runs_job_key"), "job_runs", ["job_key"])


def downgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.drop_index(op.f("ix_orders_account_id_client_order_id"))
        batch.create_unique_constraint(op.f("uq_orders_account_id_client_order_id"), ["account_id", "client_order_id"])
    op.drop_index(op.f("ix_job_runs_job_key"), table_name="job_runs")
    op.drop_table("job_runs")
    op.drop_table("statement_sets")
    op.drop_index(op.f("ix_statements_account_id_date_ns"), table_name="statements")
    op.drop_table("statements")
