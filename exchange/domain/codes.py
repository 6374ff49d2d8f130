"""Stable reason codes, grouped by the subsystem that produces them.

The string values are part of the public API (REST errors, events, journal): never rename one; add
new codes instead. `SUBSYSTEM` says which part of the core owns each code.
"""

from __future__ import annotations

from enum import StrEnum
from types import MappingProxyType


class RejectCode(StrEnum):
    # -- order validation: the command itself is malformed or outside static limits -------------
    INVALID_SIDE = "invalid_side"
    INVALID_ORDER_TYPE = "invalid_order_type"
    INVALID_STP_MODE = "invalid_stp_mode"
    INVALID_QUANTITY = "invalid_quantity"              # not a positive whole number of lots
    ORDER_TOO_LARGE = "order_too_large"                # above the series' max order size
    INVALID_PRICE = "invalid_price"                    # not a positive integer number of ticks
    PRICE_NOT_ALLOWED = "price_not_allowed"            # a price on a market order
    PRICE_OUTSIDE_BAND = "price_outside_band"          # outside ± band around the reference price
    INVALID_TIME_IN_FORCE = "invalid_time_in_force"    # e.g. post-only IOC, or market GTC
    EXPIRE_TIME_REQUIRED = "expire_time_required"      # GTD without an expiry
    EXPIRE_TIME_NOT_ALLOWED = "expire_time_not_allowed"  # expiry on a non-GTD order
    EXPIRE_TIME_IN_PAST = "expire_time_in_past"
    INVALID_CLIENT_ORDER_ID = "invalid_client_order_id"
    INVALID_AMEND = "invalid_amend"                    # neither price nor quantity given
    INVALID_ORDER_REFERENCE = "invalid_order_reference"  # cancel needs exactly one of the two ids
    AMEND_NO_CHANGE = "amend_no_change"
    INVALID_TIMEOUT = "invalid_timeout"                # cancel-all-after timeout not an integer in range

    # -- book / matching: depends on the state of the book ---------------------------------------
    POST_ONLY_WOULD_TAKE = "post_only_would_take"
    ORDER_NOT_OPEN = "order_not_open"                  # unknown, another account's, or already closed

    # -- series / listing --------------------------------------------------------------------
    UNKNOWN_SERIES = "unknown_series"
    SERIES_ALREADY_LISTED = "series_already_listed"
    TRADING_TERMINATED = "trading_terminated"
    SERIES_HALTED = "series_halted"

    # -- risk: margin, limits, cash ------------------------------------------------------------
    INSUFFICIENT_MARGIN = "insufficient_margin"
    POSITION_LIMIT = "position_limit"
    OPEN_ORDER_LIMIT = "open_order_limit"
    INSUFFICIENT_FUNDS = "insufficient_funds"          # a withdrawal that would leave margin uncovered
    INVALID_AMOUNT = "invalid_amount"
    REFERENCE_CONFLICT = "reference_conflict"          # a cash move's reference, used for another move
    INVALID_REFERENCE = "invalid_reference"

    # -- accounts ------------------------------------------------------------------------------
    UNKNOWN_ACCOUNT = "unknown_account"
    ACCOUNT_EXISTS = "account_exists"
    INVALID_ACCOUNT_ID = "invalid_account_id"
    ACCOUNT_DISABLED = "account_disabled"

    # -- idempotency -------------------------------------------------------------------------
    CLIENT_ORDER_ID_CONFLICT = "client_order_id_conflict"  # same id, different payload

    # -- settlement: daily settlement, delivery assignment and delivery settlement --------------
    INVALID_SETTLEMENT = "invalid_settlement"          # a field of a settlement command is malformed
    SETTLEMENT_CONFLICT = "settlement_conflict"        # already settled with other inputs (and not an amend)
    NOT_SETTLED = "not_settled"                        # no final settlement yet for the termination date
    TRADING_NOT_TERMINATED = "trading_not_terminated"  # deliveries are assigned only after termination
    UNKNOWN_DELIVERY = "unknown_delivery"


class CancelReason(StrEnum):
    """Why an order (or part of it) left the book without trading."""

    REQUESTED = "requested"                # the owner's cancel or mass cancel
    IOC_REMAINDER = "ioc_remainder"        # IOC / market remainder that found no more liquidity
    FOK_UNFILLABLE = "fok_unfillable"      # FOK that could not fill in full: nothing traded
    SELF_TRADE = "self_trade"              # self-trade prevention
    AMEND_REDUCED = "amend_reduced"        # quantity reduced by an amend
    TRADING_TERMINATED = "trading_terminated"
    ACCOUNT_DISABLED = "account_disabled"  # kill switch
    DEAD_MANS_SWITCH = "dead_mans_switch"  # the account's cancel-all-after deadline passed
    OUTSIDE_BAND = "outside_band"          # a reference price move left the resting order outside the band


SUBSYSTEM: MappingProxyType[RejectCode, str] = MappingProxyType(
    {
        **{c: "validation" for c in (
            RejectCode.INVALID_SIDE, RejectCode.INVALID_ORDER_TYPE, RejectCode.INVALID_STP_MODE,
            RejectCode.INVALID_QUANTITY, RejectCode.ORDER_TOO_LARGE, RejectCode.INVALID_PRICE,
            RejectCode.PRICE_NOT_ALLOWED, RejectCode.PRICE_OUTSIDE_BAND, RejectCode.INVALID_TIME_IN_FORCE,
            RejectCode.EXPIRE_TIME_REQUIRED, RejectCode.EXPIRE_TIME_NOT_ALLOWED,
            RejectCode.EXPIRE_TIME_IN_PAST, RejectCode.INVALID_CLIENT_ORDER_ID, RejectCode.INVALID_AMEND,
            RejectCode.INVALID_ORDER_REFERENCE, RejectCode.AMEND_NO_CHANGE, RejectCode.INVALID_TIMEOUT,
        )},
        **{c: "book" for c in (RejectCode.POST_ONLY_WOULD_TAKE, RejectCode.ORDER_NOT_OPEN)},
        **{c: "series" for c in (
            RejectCode.UNKNOWN_SERIES, RejectCode.SERIES_ALREADY_LISTED, RejectCode.TRADING_TERMINATED,
            RejectCode.SERIES_HALTED,
        )},
        **{c: "risk" for c in (
            RejectCode.INSUFFICIENT_MARGIN, RejectCode.POSITION_LIMIT, RejectCode.OPEN_ORDER_LIMIT,
            RejectCode.INSUFFICIENT_FUNDS, RejectCode.INVALID_AMOUNT,
        )},
        **{c: "account" for c in (
            RejectCode.UNKNOWN_ACCOUNT, RejectCode.ACCOUNT_EXISTS, RejectCode.INVALID_ACCOUNT_ID,
            RejectCode.ACCOUNT_DISABLED,
        )},
        RejectCode.CLIENT_ORDER_ID_CONFLICT: "idempotency",
        RejectCode.REFERENCE_CONFLICT: "idempotency",
        RejectCode.INVALID_REFERENCE: "idempotency",
        **{c: "settlement" for c in (
            RejectCode.INVALID_SETTLEMENT, RejectCode.SETTLEMENT_CONFLICT, RejectCode.NOT_SETTLED,
            RejectCode.TRADING_NOT_TERMINATED, RejectCode.UNKNOWN_DELIVERY,
        )},
    }
)
assert set(SUBSYSTEM) == set(RejectCode), "every reject code belongs to exactly one subsystem"
