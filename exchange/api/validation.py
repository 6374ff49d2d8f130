"""Schema violations said as a trader would: which field, what it must be, with an example.

Pydantic's own messages name its types and regular expressions ("Input should be a valid string",
"String should match pattern '^[0-9]{1,12}...'"), which tell a person little. `problems` turns each
error into `{"field", "loc", "msg", "type", "input"}` where `msg` is a sentence about the field; the
first becomes the error's message. REST (the validation handler) and WebSocket order entry share it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

PROBLEMS_MAX = 20        # a hostile body must not produce a huge answer
INPUT_ECHO_CHARS_MAX = 64

_LOCATIONS = frozenset({"body", "query", "path", "header", "cookie"})

# What a field must be when it arrives as a string (a pattern, type or value error on it) ...
_TEXT_RULES: dict[str, str] = {
    "price": 'a decimal string such as "48.25" (JSON numbers are refused so prices stay exact)',
    "amount": 'a positive decimal number of USD with at most 6 decimals, as a string, e.g. "2500.00"',
    "symbol": 'a series symbol such as "H100-M40-Z26" (capital letters, digits and "-"; see GET /v1/series)',
    "client_order_id": '1 to 36 letters, digits, "_" or "-", e.g. "my-order-1"',
    "cursor": "an opaque cursor: the next_cursor (or prev_cursor) of a previous page, passed back unchanged",
    "key_id": 'an API key id such as "ak_0123456789abcdef"',
}
# ... and when it is a whole number (an integer type or range error on it).
_NUMBER_RULES: dict[str, str] = {
    "amount": "a whole number of lots from 1 to the per-order maximum (500) as a JSON integer, e.g. 2",
    "expire_time_ns": "a time in integer nanoseconds since the epoch (UTC), e.g. 1796313600000000000",
    "timeout_seconds": "a whole number of seconds from 0 (disarm) to 86400",
    "account_id": "a positive whole number, e.g. 1001",
    "order_id": "a positive whole number: the id the exchange gave the order",
    "limit": "a whole number of items per page, from 1 up to the endpoint's maximum",
    "depth": "a whole number of price levels from 1 to 500",
    "since": "a time in integer nanoseconds since the epoch (UTC)",
    "until": "a time in integer nanoseconds since the epoch (UTC)",
    "start_ns": "a time in integer nanoseconds since the epoch (UTC)",
    "end_ns": "a time in integer nanoseconds since the epoch (UTC)",
}
_TEXT_TYPES = frozenset({"string_type", "string_pattern_mismatch", "string_too_long", "string_too_short",
                         "value_error"})
_NUMBER_TYPES = frozenset({"int_type", "int_parsing", "int_from_float", "greater_than_equal", "less_than_equal",
                           "greater_than", "less_than"})
_BOUNDS = {"greater_than_equal": ("ge", "at least"), "less_than_equal": ("le", "at most"),
           "greater_than": ("gt", "more than"), "less_than": ("lt", "less than")}


def field_path(loc: Sequence[Any]) -> str:
    """`("body", "scopes", 0)` -> "scopes[0]"; the part of a location a client wrote."""
    parts = list(loc)
    if parts and parts[0] in _LOCATIONS:
        parts = parts[1:]
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _sentence(item: Mapping[str, Any], field: str) -> str:
    kind = str(item.get("type", ""))
    ctx = item.get("ctx") or {}
    name = field.rsplit(".", 1)[-1].split("[", 1)[0]
    if kind == "missing":
        return f"{field} is required"
    if kind == "extra_forbidden":
        return f"{field} is not a field of this request"
    if kind in _TEXT_TYPES and name in _TEXT_RULES:
        return f"{field} must be {_TEXT_RULES[name]}"
    if kind in _NUMBER_TYPES and name in _NUMBER_RULES:
        rule = _NUMBER_RULES[name]
        bound = _BOUNDS.get(kind)
        if bound is not None and bound[0] in ctx:
            return f"{field} must be {bound[1]} {ctx[bound[0]]}: {rule}"
        return f"{field} must be {rule}"
    if kind == "literal_error" and "expected" in ctx:
        return f"{field} must be {ctx['expected']}"
    if kind in _BOUNDS and _BOUNDS[kind][0] in ctx:
        return f"{field} must be {_BOUNDS[kind][1]} {ctx[_BOUNDS[kind][0]]}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"{field} must be a whole number (a JSON integer)"
    if kind in ("bool_type", "bool_parsing"):
        return f"{field} must be true or false"
    if kind == "string_type":
        return f"{field} must be a string"
    if kind == "string_too_long" and "max_length" in ctx:
        return f"{field} must be at most {ctx['max_length']} characters"
    if kind == "string_pattern_mismatch":
        return f"{field} is not in the expected format"   # never the raw regex: the OpenAPI document has it
    if kind in ("too_short", "too_long", "list_type"):
        return f"{field}: {str(item.get('msg', 'wrong length')).lower()}"
    if kind in ("model_attributes_type", "dict_type", "model_type"):
        return f"{field or 'the body'} must be a JSON object"
    message = str(item.get("msg", "is invalid"))
    return f"{field}: {message[0].lower()}{message[1:]}" if field else message


def _echo(value: object) -> object:
    """The offending input, if it is short and scalar (so a client sees e.g. that it sent 48.25)."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str) and len(value) <= INPUT_ECHO_CHARS_MAX:
        return value
    return None


def problems(errors: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Pydantic's errors as the API states them (at most PROBLEMS_MAX)."""
    out = []
    for item in errors[:PROBLEMS_MAX]:
        loc = [str(part) for part in item.get("loc", ())]
        field = field_path(item.get("loc", ()))
        out.append({"field": field, "loc": loc, "msg": _sentence(item, field), "type": str(item.get("type", "")),
                    "input": _echo(item.get("input"))})
    return out


def summary(found: Sequence[Mapping[str, Any]]) -> str:
    """The error message: the first problem, and how many more there are."""
    if not found:
        return "invalid request"
    more = len(found) - 1
    return str(found[0]["msg"]) + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")
