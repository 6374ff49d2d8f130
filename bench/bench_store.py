"""Projection speed of the SQL store: events/s for a seeded flow, by batch size, on SQLite and PostgreSQL.

    python bench/bench_store.py [--commands 5000] [--pg postgresql+psycopg://postgres@127.0.0.1:5432/test]

The flow (exchange.testing.flow.random_commands) is applied to an engine first; only `Store.project`
is timed, one transaction per batch as the sequencer's group commit would call it. PostgreSQL runs in a
scratch schema that is dropped afterwards; it is skipped if the server cannot be reached.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from exchange.domain.engine import Engine
from exchange.service.sequencer import Sequenced
from exchange.store import Store
from exchange.testing.flow import random_commands

BATCH_SIZES = (1, 16, 256, 1000)


def sequenced(commands: int, seed: int) -> list[Sequenced]:
    engine = Engine()
    return [Sequenced(seq, ts, engine.apply(command, ts))
            for seq, (command, ts) in enumerate(random_commands(seed, commands), 1)]


def measure(url: str, items: list[Sequenced], batch: int) -> tuple[float, float]:
    """(events/s, commands/s) projecting `items` in batches of `batch` commands into a fresh store."""
    store = Store(url)
    try:
        store.migrate()
        start = time.perf_counter()
        for i in range(0, len(items), batch):
            store.project(items[i:i + batch])
        elapsed = time.perf_counter() - start
    finally:
        store.close()
    events = sum(len(item.events) for item in items)
    return events / elapsed, len(items) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pg", default=os.environ.get("EXCHANGE_TEST_PG_URL",
                                                      "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args()
    items = sequenced(args.commands, args.seed)
    events = sum(len(item.events) for item in items)
    print(f"{len(items)} commands, {events} events (seed {args.seed})")
    with tempfile.TemporaryDirectory() as scratch:
        for batch in BATCH_SIZES:
            url = f"sqlite:///{Path(scratch) / f'bench{batch}.db'}"
            ev, cmd = measure(url, items, batch)
            print(f"sqlite      batch {batch:5d}: {ev:9,.0f} events/s  {cmd:9,.0f} commands/s")
    admin = create_engine(args.pg, poolclass=NullPool, connect_args={"connect_timeout": 3})
    try:
        with admin.begin() as conn:
            conn.execute(text("select 1"))
    except Exception as error:
        print(f"postgresql  skipped: {type(error).__name__}: {str(error).strip()[:120]}")
        return
    for batch in BATCH_SIZES:
        schema = f"bench_{uuid.uuid4().hex[:12]}"
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        try:
            scoped = make_url(args.pg).update_query_dict({"options": f"-csearch_path={schema}"})
            ev, cmd = measure(scoped.render_as_string(hide_password=False), items, batch)
            print(f"postgresql  batch {batch:5d}: {ev:9,.0f} events/s  {cmd:9,.0f} commands/s")
        finally:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


if __name__ == "__main__":
    main()
