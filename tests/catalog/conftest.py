"""Fixtures for the catalog tests: a writable copy of the shipped contracts, and textual TOML edits."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from exchange.catalog import DEFAULT_CONTRACTS_DIR, Catalog, load_catalog


@pytest.fixture(scope="session")
def shipped() -> Catalog:
    """The catalog from the repository's contracts/ (not from $EXCHANGE_CONTRACTS_DIR)."""
    return load_catalog(DEFAULT_CONTRACTS_DIR)


@pytest.fixture
def contracts(tmp_path: Path) -> Path:
    """A copy of the shipped contracts/ that a test may edit."""
    directory = tmp_path / "contracts"
    shutil.copytree(DEFAULT_CONTRACTS_DIR, directory)
    return directory


def set_in_table(path: Path, table: str, index: int, key: str, value: str | None) -> None:
    """In the `index`-th `[[table]]` of a TOML file, set `key = value` (a TOML literal) or, with None,
    remove the key. Textual, so tests can also write values the schema must reject."""
    header = f"[[{table}]]\n"
    head, *items = path.read_text().split(header)
    lines = [line for line in items[index].splitlines(keepends=True) if not line.startswith(f"{key} =")]
    if value is not None:
        lines.insert(0, f"{key} = {value}\n")
    items[index] = "".join(lines)
    path.write_text(head + "".join(header + item for item in items))


def set_line(path: Path, key: str, value: str) -> None:
    """Replace the value of the one line `key = ...` of a TOML file (for keys that occur once)."""
    text, count = re.subn(rf"^{re.escape(key)} = .*$", f"{key} = {value}", path.read_text(), flags=re.M)
    assert count == 1, f"{key} occurs {count} times in {path}"
    path.write_text(text)
