"""Statements of record in the store: written by the settlement jobs (one transaction per settlement
date or delivery run), read by `GET /v1/statements`. Each is the JSON the job computed; CSV and HTML
are rendered from it on request (exchange/jobs/statement_formats.py)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, insert, or_, select

from exchange.store.models import StatementRecord, StatementSetRecord
from exchange.store.store import Store

PAGE_MAX = 500


@dataclass(frozen=True, slots=True)
class StatementRow:
    kind: str
    ref: str
    account_id: int
    date_ns: int
    body: dict[str, Any]


class StatementArchive:
    def __init__(self, store: Store) -> None:
        self.store = store

    def write(self, kind: str, ref: str, statements: Sequence[tuple[int, int, dict[str, Any]]], now_ns: int,
              *, complete: bool = True) -> None:
        """Replace the statements of (kind, ref): (account, date_ns, body) each; `complete` marks the set
        as whole (a rerun finds it done). One transaction: a reader sees all of a set or none of it."""
        rows = [{"kind": kind, "ref": ref, "account_id": account, "date_ns": date_ns,
                 "body": json.dumps(body, separators=(",", ":")).encode(), "written_ts_ns": now_ns}
                for account, date_ns, body in statements]
        with self.store.transaction(write=True) as conn:
            conn.execute(delete(StatementRecord).where(StatementRecord.kind == kind, StatementRecord.ref == ref))
            if rows:
                conn.execute(insert(StatementRecord), rows)
            conn.execute(delete(StatementSetRecord).where(StatementSetRecord.kind == kind,
                                                          StatementSetRecord.ref == ref))
            if complete:
                conn.execute(insert(StatementSetRecord).values(kind=kind, ref=ref, statements=len(rows),
                                                               written_ts_ns=now_ns))

    def complete(self, kind: str) -> set[str]:
        """The refs of `kind` whose statements are all written."""
        with self.store.transaction() as conn:
            return set(conn.execute(select(StatementSetRecord.ref).where(StatementSetRecord.kind == kind)).scalars())

    def page(self, account_id: int, kind: str | None, limit: int,
             before: tuple[int, str, str] | None = None) -> list[StatementRow]:
        """An account's statements, newest first (date, then kind and ref descending), after `before`."""
        assert 0 < limit <= PAGE_MAX + 1   # a route asks one more than a page to know if another follows
        t = StatementRecord
        query = select(t.kind, t.ref, t.account_id, t.date_ns, t.body).where(t.account_id == account_id)
        if kind is not None:
            query = query.where(t.kind == kind)
        if before is not None:
            date_ns, before_kind, before_ref = before
            query = query.where(or_(t.date_ns < date_ns, and_(t.date_ns == date_ns, or_(
                t.kind < before_kind, and_(t.kind == before_kind, t.ref < before_ref)))))
        query = query.order_by(t.date_ns.desc(), t.kind.desc(), t.ref.desc()).limit(limit)
        with self.store.transaction() as conn:
            return [StatementRow(r.kind, r.ref, r.account_id, r.date_ns, json.loads(r.body))
                    for r in conn.execute(query)]

    def get(self, account_id: int, kind: str, ref: str) -> StatementRow | None:
        t = StatementRecord
        query = select(t.kind, t.ref, t.account_id, t.date_ns, t.body).where(
            t.account_id == account_id, t.kind == kind, t.ref == ref)
        with self.store.transaction() as conn:
            row = conn.execute(query).first()
        return None if row is None else StatementRow(row.kind, row.ref, row.account_id, row.date_ns,
                                                     json.loads(row.body))
