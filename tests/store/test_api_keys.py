"""API keys: only a salted hash is stored; the right secret verifies, anything else does not."""

from __future__ import annotations

import pytest

from exchange.domain.commands import CreateAccount
from exchange.store import Store
from exchange.testing.specs import T0_NS
from tests.store.helpers import run


@pytest.fixture
def keyed_store(store: Store) -> Store:
    _, items = run([(CreateAccount(1), T0_NS), (CreateAccount(2), T0_NS)])
    store.project(items)
    return store


def test_a_created_key_verifies(keyed_store: Store) -> None:
    key_id, secret = keyed_store.create_api_key(1, ["trade", "read", "read"], T0_NS)
    row = keyed_store.verify_api_key(key_id, secret)
    assert row is not None
    assert (row.key_id, row.account_id, row.scopes, row.created_ts_ns, row.revoked_ts_ns) == (
        key_id, 1, ("read", "trade"), T0_NS, None)


def test_wrong_secrets_and_unknown_keys_fail(keyed_store: Store) -> None:
    key_id, secret = keyed_store.create_api_key(1, ["read"], T0_NS)
    other_id, other_secret = keyed_store.create_api_key(2, ["read"], T0_NS)
    assert keyed_store.verify_api_key(key_id, secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None
    assert keyed_store.verify_api_key(key_id, "") is None
    assert keyed_store.verify_api_key(key_id, other_secret) is None
    assert keyed_store.verify_api_key("ak_unknown", secret) is None
    verified = keyed_store.verify_api_key(other_id, other_secret)
    assert verified is not None and verified.account_id == 2


def test_only_a_salted_hash_is_stored(keyed_store: Store) -> None:
    key_id, secret = keyed_store.create_api_key(1, ["read"], T0_NS)
    twin_id, twin_secret = keyed_store.create_api_key(1, ["read"], T0_NS)
    record = keyed_store.api_key_record(key_id)
    twin = keyed_store.api_key_record(twin_id)
    assert record is not None and twin is not None
    assert secret != twin_secret and key_id != twin_id
    assert record["secret_hash"] != secret.encode()
    assert all(secret not in str(value) and secret.encode() not in (value if isinstance(value, bytes) else b"")
               for value in record.values())
    assert len(record["salt"]) == 16 and record["salt"] != twin["salt"]
    assert record["hash_params"].startswith("scrypt:")


def test_a_revoked_key_fails(keyed_store: Store) -> None:
    key_id, secret = keyed_store.create_api_key(1, ["read"], T0_NS)
    assert keyed_store.revoke_api_key(key_id, T0_NS + 1)
    assert not keyed_store.revoke_api_key(key_id, T0_NS + 2)
    assert keyed_store.verify_api_key(key_id, secret) is None


def test_keys_need_a_known_account_and_valid_scopes(keyed_store: Store) -> None:
    with pytest.raises(ValueError, match="no account 9"):
        keyed_store.create_api_key(9, ["read"], T0_NS)
    with pytest.raises(ValueError, match="invalid scope"):
        keyed_store.create_api_key(1, ["Read Me"], T0_NS)
