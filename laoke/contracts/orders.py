"""Order events (`laoke.orders.v1`), emitted by ingest on every real change of an order."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from laoke.contracts.customers import BuyerSnapshot


class OrderStatus(StrEnum):
    CREATED = "created"  # placed, not paid
    PAID = "paid"
    SHIPPED = "shipped"
    COMPLETED = "completed"
    CLOSED = "closed"  # cancelled before payment
    REFUNDED = "refunded"
    PARTIALLY_REFUNDED = "partially_refunded"


# Statuses in which the buyer has paid (money counts towards spend and RFM).
PAID_STATUSES = frozenset(
    {OrderStatus.PAID, OrderStatus.SHIPPED, OrderStatus.COMPLETED, OrderStatus.PARTIALLY_REFUNDED}
)

ORDER_EVENT_TYPES = {
    OrderStatus.CREATED: "order.created",
    OrderStatus.PAID: "order.paid",
    OrderStatus.SHIPPED: "order.shipped",
    OrderStatus.COMPLETED: "order.completed",
    OrderStatus.CLOSED: "order.closed",
    OrderStatus.REFUNDED: "order.refunded",
    OrderStatus.PARTIALLY_REFUNDED: "order.refunded",
}


class OrderEventPayload(BaseModel):
    """A snapshot of the order after the change, so a consumer never needs to call ingest back."""

    model_config = ConfigDict(extra="ignore")

    order_id: str
    customer_id: str
    channel: str
    external_order_id: str
    status: OrderStatus
    previous_status: OrderStatus | None = None
    currency: str = "CNY"
    total_fen: int
    paid_fen: int
    refunded_fen: int = 0
    item_count: int = 0
    placed_at: datetime
    paid_at: datetime | None = None
    shipped_at: datetime | None = None
    completed_at: datetime | None = None
    source_modified_at: datetime
    coupon_codes: list[str] = []
    buyer: BuyerSnapshot | None = None
