"""Request signing shared by the server (`exchange.api`) and the SDK (`exchange.client`).

A private request carries three headers (Coinbase style):

    EX-ACCESS-KEY        the API key id
    EX-ACCESS-TIMESTAMP  seconds since the Unix epoch: an integer, or with a fraction of up to 6 digits
                         ("1764900000.123456"); the server allows ±5 s
    EX-ACCESS-SIGN       base64( HMAC-SHA256( secret, timestamp + METHOD + path_with_query
                                                      [+ "\nIdempotency-Key:" + key + "\n"] + body ) )

`path_with_query` is the request target exactly as sent (`/v1/orders?status=open`), `METHOD` is upper
case and `body` is the raw request body (empty for GET/DELETE without a body). The bracketed part is
there only when the request carries an `Idempotency-Key` header, so the key cannot be swapped on a
captured request. The timestamp is signed exactly as sent (its text). A signature that acts (any method
but GET/HEAD) is accepted once: a client sending identical requests within one second must give the
timestamp a fraction to keep them distinct (the SDK signs with microseconds). The secret is used as
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
import re

HEADER_KEY = "EX-ACCESS-KEY"
HEADER_TIMESTAMP = "EX-ACCESS-TIMESTAMP"
HEADER_SIGNATURE = "EX-ACCESS-SIGN"
HEADER_IDEMPOTENCY_KEY = "Idempotency-Key"

TIMESTAMP_WINDOW_S = 5
IDEMPOTENCY_KEY_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")   # the Idempotency-Key header's form
TIMESTAMP_RE = re.compile(r"^[0-9]{1,12}(?:\.[0-9]{1,6})?$")


def prehash(timestamp_s: int | str, method: str, path_with_query: str, body: bytes | str = b"",
            idempotency_key: str | None = None) -> bytes:
    """The exact bytes that are signed."""
    if isinstance(body, str):
        body = body.encode()
    head = f"{timestamp_s}{method.upper()}{path_with_query}"
    if idempotency_key is not None:
        # Newlines cannot occur in a request target or a valid key, so the parts cannot be shifted.
        head += f"\n{HEADER_IDEMPOTENCY_KEY}:{idempotency_key}\n"
    return head.encode() + body


def sign(secret: str, timestamp_s: int | str, method: str, path_with_query: str, body: bytes | str = b"",
         idempotency_key: str | None = None) -> str:
    message = prehash(timestamp_s, method, path_with_query, body, idempotency_key)
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def body_mac(secret: str, timestamp_s: int | str, method: str, path_with_query: str,
             idempotency_key: str | None = None) -> hmac.HMAC:
    """An HMAC fed everything signed but the body: `update()` it with the body as it streams by, then
    `mac_signature()` is `sign(...)` of the whole (a file upload is signed and checked this way, never
    held in memory)."""
    return hmac.new(secret.encode(), prehash(timestamp_s, method, path_with_query, b"", idempotency_key),
                    hashlib.sha256)


def mac_signature(mac: hmac.HMAC) -> str:
    return base64.b64encode(mac.digest()).decode()


def signature_matches(secret: str, signature: str, timestamp_s: int | str, method: str, path_with_query: str,
                      body: bytes | str = b"", idempotency_key: str | None = None) -> bool:
    """Constant-time comparison of a received signature with the expected one."""
    expected = sign(secret, timestamp_s, method, path_with_query, body, idempotency_key)
    return hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace"))


def derive_secret(master_key: bytes, key_id: str) -> str:
    """The API secret of `key_id`: URL-safe base64 of HMAC-SHA256(master key, "api-key:" + key id)."""
    assert len(master_key) >= 32, "the master key must hold at least 256 bits"
    digest = hmac.new(master_key, f"api-key:{key_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")
