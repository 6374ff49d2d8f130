"""Checking and encoding the values the SDK sends: USD amounts as decimal strings, lots as ints.

Money never travels as a float: a float argument is refused with TypeError rather than rounded.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

Money = Decimal | str | int
"""A price or cash amount: a Decimal, a decimal string ("2.35") or an int (whole dollars)."""


def money(value: Money, name: str) -> str:
    """`value` as the decimal string the API expects ("2.3500"); TypeError for a float (or any other
    type), ValueError for a string that is not a finite decimal number."""
    if isinstance(value, bool) or not isinstance(value, Decimal | str | int):
        raise TypeError(f"{name} must be a Decimal, str or int (never a float), not {type(value).__name__}")
    if isinstance(value, int):
        return str(value)
    try:
        number = Decimal(value) if isinstance(value, str) else value
    except InvalidOperation:
        raise ValueError(f"{name} is not a decimal number: {value!r}") from None
    if not number.is_finite():
        raise ValueError(f"{name} must be finite, not {value!r}")
    return value.strip() if isinstance(value, str) else format(number, "f")


def whole(value: int, name: str) -> int:
    """An integer argument (lots, ids, seconds, timestamps); TypeError for a float, bool or str."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    return value


def flag(value: bool, name: str) -> bool:
    """A boolean argument; TypeError for anything else (so `halted=0` is not silently accepted)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, not {type(value).__name__}")
    return value
