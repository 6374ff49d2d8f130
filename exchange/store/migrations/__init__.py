"""Alembic migrations of the SQL store. `exchange.store.Store.migrate()` runs them; no alembic.ini needed.

To write a new revision after changing `exchange/store/models.py`, from the repository root::

    .venv/bin/python -m exchange.store.migrations revision "what changed"

(autogenerates it against a scratch SQLite database upgraded to head), then review the file.
"""
