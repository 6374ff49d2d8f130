"""Signatures over the values as written, and the probe key from the settings."""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from pathlib import Path

import pytest

from exchange.settings import Settings
from exchange.telemetry import canonical_message, load_probe_key, sign, verify
from exchange.telemetry.signing import Signer
from tests.telemetry.support import KEY

VALUES = ["H100-M40-Z26/1", "node-1", "2026-12-03T05:00:00Z", "8", "0.9500", "0.41"]


def test_the_message_is_the_six_values_joined_by_bars_as_written() -> None:
    assert canonical_message(VALUES) == b"H100-M40-Z26/1|node-1|2026-12-03T05:00:00Z|8|0.9500|0.41"
    with pytest.raises(ValueError, match="6 values"):
        canonical_message(VALUES[:5])


def test_sign_is_hex_hmac_sha256_and_verify_is_exact() -> None:
    expected = hmac.new(KEY, canonical_message(VALUES), hashlib.sha256).hexdigest()
    assert sign(KEY, VALUES) == expected
    assert verify(KEY, VALUES, expected) and verify(KEY, VALUES, expected.upper())
    assert not verify(KEY, [*VALUES[:4], "0.95", VALUES[5]], expected)  # the same number written otherwise
    assert not verify(KEY, VALUES, expected[:-1]) and not verify(KEY, VALUES, "g" * 64)
    assert not verify(bytes(32), VALUES, expected)


@pytest.mark.parametrize("key", [b"", b"k", bytes(64), bytes(range(65)), os.urandom(200)])
def test_the_fast_signer_is_hmac(key: bytes) -> None:
    message = canonical_message(VALUES)
    assert Signer(key).hexdigest(message) == hmac.new(key, message, hashlib.sha256).hexdigest()


def test_probe_key_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EXCHANGE_PROBE_KEY", "ab" * 32)
    assert load_probe_key(tmp_path) == bytes.fromhex("ab" * 32)
    assert not (tmp_path / "probe.key").exists()
    monkeypatch.setenv("EXCHANGE_PROBE_KEY", "ab" * 31)
    with pytest.raises(ValueError, match="at least 32 bytes"):
        load_probe_key(tmp_path)
    monkeypatch.setenv("EXCHANGE_PROBE_KEY", "xy" * 32)
    with pytest.raises(ValueError, match="hex"):
        load_probe_key(tmp_path)


def test_probe_key_file_is_created_once_with_mode_0600(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("EXCHANGE_PROBE_KEY", raising=False)
    data = tmp_path / "data"
    key = Settings(data_dir=data).load_probe_key(create=True)   # what init and serve do
    assert len(key) == 32 and stat.S_IMODE((data / "probe.key").stat().st_mode) == 0o600
    assert Settings(data_dir=data).load_probe_key() == key
    assert Settings(data_dir=data).load_master_key() != key  # a separate key
