"""The SQL store: SQLAlchemy models, the event projector and Alembic migrations (DESIGN.md principle 3)."""

from exchange.domain.account import fill_position
from exchange.store.projector import ProjectionError
from exchange.store.store import (
    AccountRow,
    ApiKeyRow,
    DailySettlementRow,
    DeliveryRow,
    OrderRow,
    PositionRow,
    PostingRow,
    SeriesRow,
    Store,
    TradeRow,
)

__all__ = [
    "AccountRow", "ApiKeyRow", "DailySettlementRow", "DeliveryRow", "OrderRow",
    "PositionRow", "PostingRow", "ProjectionError", "SeriesRow", "Store",
    "TradeRow", "fill_position",
]
