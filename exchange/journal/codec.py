"""Commands <-> msgpack-able lists, exactly and reversibly.

Why msgpack: a compact binary encoding with a C implementation (fast enough to stay off the
profile), self-describing enough to debug with any msgpack tool, and with integers of any size up to
64 bits as native values. The framing around it (length, checksum, version) lives in `record.py`.

Each command type has a stable tag (never renumber: journals on disk depend on it) and a field
schema. Decoding rebuilds the exact values, enums included, so that a decoded command compares and
`repr`s equal to the original (the state hash includes client-order retries' commands).

msgpack writes tuples as arrays and reads them back as lists: fields that are tuples in the command
(`SettleDaily.postings`, a tuple of (account id, amount) pairs) are rebuilt as tuples of tuples.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from enum import IntEnum
from types import MappingProxyType
from typing import Any

from exchange.domain.commands import (
    AdvanceTime,
    AmendOrder,
    AssignDeliveries,
    CancelAllAfter,
    CancelOrder,
    Command,
    CreateAccount,
    Deposit,
    HaltSeries,
    ListSeries,
    MassCancel,
    PlaceOrder,
    SetAccountEnabled,
    SettleDaily,
    SettleDelivery,
    TerminateTrading,
    Withdraw,
)
from exchange.domain.order import OrderType, Side, StpMode, TimeInForce
from exchange.domain.spec import PeriodKind, SeriesSpec


class CodecError(ValueError):
    """A payload that does not decode into a command of this version."""


def _int(value: Any) -> int:
    if type(value) is not int:
        raise TypeError(f"expected an integer, got {value!r:.40}")
    return value


def _str(value: Any) -> str:
    if type(value) is not str:
        raise TypeError(f"expected a string, got {value!r:.40}")
    return value


def _bool(value: Any) -> bool:
    if type(value) is not bool:
        raise TypeError(f"expected true or false, got {value!r:.40}")
    return value


def _enum(kind: type[IntEnum]) -> Callable[[Any], Any]:
    """A decoder for an IntEnum by dict lookup: about ten times cheaper than calling the enum class."""
    members = {int(member): member for member in kind}
    name = kind.__name__

    def decode(value: Any) -> Any:
        # ints and the enum's own members (hash and compare as ints); never bools, which are ints too
        member = members.get(value) if isinstance(value, int) and type(value) is not bool else None
        if member is None:
            raise ValueError(f"{value!r:.20} is not a valid {name}")
        return member

    return decode


def _optional(decode: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def optional(value: Any) -> Any:
        return None if value is None else decode(value)
    return optional


def _pairs(value: Any) -> tuple[tuple[int, int], ...]:
    """A sequence of (int, int) pairs (tuples, or lists as msgpack gives them back) as a tuple of tuples."""
    if type(value) is not tuple and type(value) is not list:
        raise TypeError(f"expected a list of pairs, got {value!r:.40}")
    pairs = []
    for pair in value:
        if (type(pair) is not tuple and type(pair) is not list) or len(pair) != 2:
            raise TypeError(f"expected a pair of integers, got {pair!r:.40}")
        pairs.append((_int(pair[0]), _int(pair[1])))
    return tuple(pairs)


def _encode_spec(spec: SeriesSpec) -> list[Any]:
    return [spec.symbol, spec.product, spec.generation, str(spec.mfu_grade), spec.period.value, spec.gpus_per_lot,
            spec.delivery_start_ns, spec.delivery_end_ns, spec.trading_end_ns, spec.tick_micros,
            spec.reference_price_ticks, spec.price_band_ppm, spec.max_order_lots, spec.max_position_lots,
            spec.initial_margin_ppm, spec.taker_fee_ppm, spec.maker_fee_ppm]


def _decode_spec(fields: Any) -> SeriesSpec:
    if not isinstance(fields, list) or len(fields) != 17:
        raise TypeError("a series spec is a list of 17 fields")
    (symbol, product, generation, grade, period, *numbers) = fields
    return SeriesSpec(_str(symbol), _str(product), _str(generation), Decimal(_str(grade)), PeriodKind(period),
                      *(_int(n) for n in numbers))


# Field decoders per command type (encoding is the identity but for the spec and enums -> ints).
_INT, _STR, _BOOL = _int, _str, _bool
_SCHEMA: dict[type, tuple[Callable[[Any], Any], ...]] = {
    CreateAccount: (_INT,),
    Deposit: (_INT, _INT, _optional(_str)),
    Withdraw: (_INT, _INT, _optional(_str)),
    SetAccountEnabled: (_INT, _BOOL),
    ListSeries: (_decode_spec,),
    HaltSeries: (_STR, _BOOL),
    TerminateTrading: (_STR,),
    PlaceOrder: (_INT, _STR, _enum(Side), _INT, _optional(_int), _enum(OrderType), _enum(TimeInForce), _BOOL,
                 _enum(StpMode),
                 _optional(_str), _optional(_int)),
    CancelOrder: (_INT, _optional(_int), _optional(_str)),
    AmendOrder: (_INT, _optional(_int), _optional(_int), _optional(_int), _optional(_str)),
    MassCancel: (_INT, _optional(_str), _optional(_enum(Side))),
    AdvanceTime: (),
    CancelAllAfter: (_INT, _INT),
    SettleDaily: (_STR, _INT, _INT, _pairs, _STR, _BOOL),
    AssignDeliveries: (_STR,),
    SettleDelivery: (_STR, _STR, _INT, _INT, _INT, _BOOL, _BOOL),
}

# Trailing fields a command type gained after journals were written with it (they have defaults): a
# record without them still decodes. Deposit and Withdraw gained `reference`.
_ADDED_LATER: dict[type, int] = {Deposit: 1, Withdraw: 1}

# Stable tags: append new command types at the end, never reuse or renumber.
TAGS: MappingProxyType[type, int] = MappingProxyType({
    CreateAccount: 1, Deposit: 2, Withdraw: 3, SetAccountEnabled: 4, ListSeries: 5, HaltSeries: 6,
    TerminateTrading: 7, PlaceOrder: 8, CancelOrder: 9, AmendOrder: 10, MassCancel: 11, AdvanceTime: 12,
    CancelAllAfter: 13, SettleDaily: 14, AssignDeliveries: 15, SettleDelivery: 16,
})
_BY_TAG: dict[int, type] = {tag: kind for kind, tag in TAGS.items()}
assert set(TAGS) == set(_SCHEMA), "every command type needs a tag and a schema"


def encode_command(command: Command) -> list[Any]:
    """[tag, field, ...] with enums as ints and a SeriesSpec as a list (decimals as strings).

    Every field goes through the same decoder recovery will use: a command whose fields do not fit
    the schema (a string where an int belongs) is refused here, so the journal never holds a record
    that recovery could not read back.
    """
    kind = type(command)
    tag = TAGS.get(kind)
    if tag is None:
        raise CodecError(f"not a command: {command!r:.80}")
    if kind is ListSeries:
        encoded = [tag, _encode_spec(command.spec)]  # type: ignore[union-attr]
        decode_command(encoded)
        return encoded
    try:
        for decode, value in zip(_SCHEMA[kind], command, strict=True):
            decode(value)
    except (TypeError, ValueError, ArithmeticError) as error:
        raise CodecError(f"bad {kind.__name__} fields: {error}") from None
    # Enum members go in as they are: msgpack writes an int subclass as the plain int; tuples as arrays.
    return [tag, *command]


def decode_command(fields: list[Any]) -> Command:
    if not isinstance(fields, list) or not fields or type(fields[0]) is not int:
        raise CodecError(f"a command is [tag, fields...], not {fields!r:.80}")
    kind = _BY_TAG.get(fields[0])
    if kind is None:
        raise CodecError(f"unknown command tag {fields[0]}")
    decoders = _SCHEMA[kind]
    values = fields[1:]
    added = _ADDED_LATER.get(kind, 0)
    if len(decoders) - added <= len(values) < len(decoders):
        decoders = decoders[:len(values)]   # written before its trailing fields existed: their defaults
    if len(values) != len(decoders):
        raise CodecError(f"{kind.__name__} takes {len(decoders)} fields, got {len(values)}")
    try:
        return kind(*(decode(value) for decode, value in zip(decoders, values, strict=True)))  # type: ignore[no-any-return]
    except (TypeError, ValueError, ArithmeticError) as error:
        raise CodecError(f"bad {kind.__name__} fields: {error}") from None
