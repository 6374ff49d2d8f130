"""Opaque page cursors for lists that are newest first (public trades, fills), both ways.

A cursor names a position in the list and a direction: `older` (the `next_cursor` of a page: the
trades before its oldest) or `newer` (its `prev_cursor`: the trades after its newest, which is also how
a client polls for new trades). Clients pass it back unchanged and never build one: what is inside
(a direction letter and the key of a trade) may change between versions. It is plain text with a
pattern in the OpenAPI document, so that every string the document admits is a cursor the API reads
(a random base64 token would be "schema-valid" and still refused).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from exchange.api.errors import ApiCode, ApiError

Direction = Literal["older", "newer"]
_TAGS: dict[str, Direction] = {"o": "older", "n": "newer"}
_TAG_OF = {direction: tag for tag, direction in _TAGS.items()}
_ID = r"[0-9]{1,18}"
TRADE_CURSOR_PATTERN = rf"^[on]{_ID}$"                                         # the trade id
FILL_CURSOR_PATTERN = rf"^[on]{_ID}\.[A-Z0-9][A-Z0-9-]{{0,31}}\.{_ID}$"       # seq.symbol.trade id
CURSOR_DESCRIPTION = ("an opaque cursor: the `next_cursor` (older trades) or `prev_cursor` (newer trades) of a "
                      "previous page, passed back unchanged")


def encode(direction: Direction, key: tuple[Any, ...]) -> str:
    return _TAG_OF[direction] + ".".join(str(part) for part in key)


def decode(cursor: str, kinds: tuple[type, ...]) -> tuple[Direction, tuple[Any, ...]]:
    """(direction, key) of a cursor whose key has parts of `kinds` (int or str); 422 if it is not one
    (the query's pattern has refused most such strings already)."""
    try:
        tag, parts = cursor[:1], cursor[1:].split(".")
        if tag not in _TAGS or len(parts) != len(kinds) or not re.fullmatch(r"[0-9A-Z.-]+", cursor[1:]):
            raise ValueError(tag)
        key = tuple(int(part) if kind is int else part for part, kind in zip(parts, kinds, strict=True))
    except ValueError:
        raise ApiError(422, ApiCode.VALIDATION_ERROR, f"cursor must be {CURSOR_DESCRIPTION}",
                       {"errors": [{"field": "cursor", "loc": ["query", "cursor"], "type": "cursor_invalid",
                                    "msg": "not a cursor of this list", "input": cursor[:64]}]}) from None
    return _TAGS[tag], key


def page(items: list[dict[str, Any]], keys: list[tuple[Any, ...]], more: bool,
         asked: tuple[Direction, tuple[Any, ...]] | None, zero_key: tuple[Any, ...]) -> dict[str, Any]:
    """A newest-first page with its cursors. `keys` are the items' keys (same order), `more` whether the
    store saw more in the direction of travel, `asked` the decoded request cursor.

    `next_cursor` (older) is null once nothing older is known to exist. `prev_cursor` (newer) is always
    given except past the oldest end: after the newest trade of the page, or, on an empty page, the
    position asked for (so a client polling for new trades keeps its place)."""
    going_newer = asked is not None and asked[0] == "newer"
    if items:
        older_exist = more if not going_newer else True
        next_cursor = encode("older", keys[-1]) if older_exist else None
        prev_cursor: str | None = encode("newer", keys[0])
    else:
        next_cursor = None
        prev_cursor = None if asked is not None and not going_newer else encode(
            "newer", asked[1] if asked is not None else zero_key)
    return {"items": items, "next_cursor": next_cursor, "prev_cursor": prev_cursor}
