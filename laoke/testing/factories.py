"""Request bodies for tests and benchmarks, so the order shape lives in one place as it grows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from laoke.contracts.orders import OrderEventPayload, OrderStatus

PLACED_AT = "2026-11-20T09:30:00+08:00"


def order_json(
    order_id: str,
    *,
    buyer: str,
    status: str = "completed",
    total: str = "88.00",
    placed_at: str = PLACED_AT,
    nick: str | None = None,
    mobile: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A `POST /api/v1/orders` body; `extra` adds or overrides fields (channel, modified_at, ...)."""
    buyer_json: dict[str, str] = {"external_id": buyer}
    if nick is not None:
        buyer_json["nick"] = nick
    if mobile is not None:
        buyer_json["mobile"] = mobile
    return {
        "order_id": order_id,
        "status": status,
        "buyer": buyer_json,
        "total_amount": total,
        "placed_at": placed_at,
        **extra,
    }


RUN_START = datetime(2026, 11, 1, 10, tzinfo=UTC)


def order_payload(
    order_id: str,
    customer: str,
    status: OrderStatus,
    minutes: int,
    paid: int,
    refunded: int = 0,
    *,
    channel: str = "api",
    completed: bool = False,
) -> OrderEventPayload:
    """An order event's payload placed at `RUN_START`, in the state it reached `minutes` later: for tests
    that hand a run of events straight to a service's handler code."""
    return OrderEventPayload(
        order_id=order_id,
        customer_id=customer,
        channel=channel,
        external_order_id=order_id.upper(),
        status=status,
        total_fen=paid,
        paid_fen=paid,
        refunded_fen=refunded,
        placed_at=RUN_START,
        completed_at=RUN_START + timedelta(minutes=minutes) if completed else None,
        source_modified_at=RUN_START + timedelta(minutes=minutes),
    )
