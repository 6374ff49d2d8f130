"""Request signing shared by the server (`exchange.api`) and the SDK (`exchange.client`).

A private request carries three headers (Coinbase style):

    EX-ACCESS-KEY        the API key id
    EX-ACCESS-TIMESTAMP  seconds since the Unix epoch, an integer (the server allows ±5 s)
    EX-ACCESS-SIGN       base64( HMAC-SHA256( secret, timestamp + METHOD + path_with_query + body ) )

`path_with_query` is the request target exactly as sent (`/v1/orders?status=open`), `METHOD` is upper
case and `body` is the raw request body (empty for GET/DELETE without a body). The secret is used as
given (its ASCII bytes), so that a shell can sign with `openssl dgst -sha256 -hmac "$SECRET" -binary |
base64`.

Secrets are never stored: the server derives each key's secret from its master key and the key id
(`derive_secret`), so the database holds only a salted hash of it (for audit) and a leak of the database
reveals no secret. Kept free of any web framework so that both sides import it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

HEADER_KEY = "EX-ACCESS-KEY"
HEADER_TIMESTAMP = "EX-ACCESS-TIMESTAMP"
HEADER_SIGNATURE = "EX-ACCESS-SIGN"
HEADER_IDEMPOTENCY_KEY = "Idempotency-Key"

TIMESTAMP_WINDOW_S = 5


def prehash(timestamp_s: int | str, method: str, path_with_query: str, body: bytes | str = b"") -> bytes:
    """The exact bytes that are signed."""
    if isinstance(body, str):
        body = body.encode()
    return f"{timestamp_s}{method.upper()}{path_with_query}".encode() + body


def sign(secret: str, timestamp_s: int | str, method: str, path_with_query: str, body: bytes | str = b"") -> str:
    digest = hmac.new(secret.encode(), prehash(timestamp_s, method, path_with_query, body), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def signature_matches(secret: str, signature: str, timestamp_s: int | str, method: str, path_with_query: str,
                      body: bytes | str = b"") -> bool:
    """Constant-time comparison of a received signature with the expected one."""
    expected = sign(secret, timestamp_s, method, path_with_query, body)
    return hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace"))


def derive_secret(master_key: bytes, key_id: str) -> str:
    """The API secret of `key_id`: URL-safe base64 of HMAC-SHA256(master key, "api-key:" + key id)."""
    assert len(master_key) >= 32, "the master key must hold at least 256 bits"
    digest = hmac.new(master_key, f"api-key:{key_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")
