"""Data files are private: the data directory 0700; keys, journal, snapshots, marker and database 0600."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
from pathlib import Path

from exchange.domain.commands import CreateAccount
from exchange.service.exchange_service import ExchangeService, ServiceConfig
from exchange.store import Store


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _assert_private(data: Path) -> None:
    assert _mode(data) == 0o700
    files = [p for folder in (data, data / "journal", data / "snapshots") if folder.is_dir()
             for p in folder.iterdir() if p.is_file()]
    assert files
    loose = {str(p.relative_to(data)): oct(_mode(p)) for p in files if _mode(p) != 0o600}
    assert not loose, loose


def test_a_new_data_directory_is_private_whatever_the_umask(tmp_path: Path) -> None:
    data = tmp_path / "data"
    old = os.umask(0o022)   # a typical umask: files would be world-readable
    try:
        data.mkdir()
        store = Store(f"sqlite:///{data / 'exchange.db'}")
        store.migrate()
        service = ExchangeService(ServiceConfig(data, snapshot_mode="inline", deadline_poll_ms=0), store)
        service.open()

        async def run() -> None:
            await service.start()
            await service.submit(CreateAccount(5))
            await service.stop()
        asyncio.run(run())
        service.open()
        service.snapshot_now()
        service.close()
        store.close()
    finally:
        os.umask(old)
    assert {p.name for p in (data / "journal").iterdir()} >= {"COMMITTED", "00000000000000000001.journal"}
    assert list((data / "snapshots").iterdir())
    _assert_private(data)


def test_an_existing_loose_data_directory_is_tightened_at_start(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = ExchangeService(ServiceConfig(data, deadline_poll_ms=0))
    first.open()
    first.close()
    data.chmod(0o755)
    (data / "journal" / "COMMITTED").chmod(0o644)
    (data / "stray.json").write_text("{}")
    (data / "stray.json").chmod(0o664)
    service = ExchangeService(ServiceConfig(data, deadline_poll_ms=0))
    service.open()
    service.close()
    _assert_private(data)


def test_the_command_line_creates_private_files(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {**os.environ, "EXCHANGE_DATA_DIR": str(data)}
    env.pop("EXCHANGE_PROBE_KEY", None)
    env.pop("EXCHANGE_MASTER_KEY", None)
    subprocess.run([sys.executable, "-c", "from exchange.cli import main; main()", "init"], env=env, check=True,
                   capture_output=True, timeout=120)
    assert (data / "probe.key").exists() and (data / "exchange.db").exists()
    _assert_private(data)
