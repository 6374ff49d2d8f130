"""`python -m exchange.store.migrations revision "message"`: autogenerate a new revision from the models.

It upgrades a scratch SQLite database to the current head, compares it with `exchange/store/models.py`
and writes the difference as a new file in `versions/` (named `v_<rev>_<slug>.py`, a valid module name
for mypy). Review it, run `ruff check --fix` on it, and run tests/store (both backends) before use.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from alembic import command

from exchange.store.store import Store


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "revision":
        print(__doc__, file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as scratch:
        store = Store(f"sqlite:///{Path(scratch) / 'scratch.db'}")
        try:
            store.migrate()
            with store.engine.begin() as conn:
                config = store.alembic_config(conn)
                config.set_main_option("file_template", "v_%%(rev)s_%%(slug)s")
                command.revision(config, message=argv[1], autogenerate=True)
        finally:
            store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
