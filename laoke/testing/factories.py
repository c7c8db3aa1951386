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


def import_feed_row(
    number: int, customer_id: str, placed_at: datetime, yuan: int, status: str = "completed"
) -> dict[str, object]:
    """Order `ord_imp_<number>` as an import's feed carries it (`IMPORT_FEED_COLUMNS`), for tests that
    absorb an import from a temp table of their own."""
    return {
        "id": f"ord_imp_{number}",
        "customer_id": customer_id,
        "channel": "taobao",
        "external_order_id": f"T{number}",
        "status": status,
        "currency": "CNY",
        "total_fen": yuan * 100,
        "paid_fen": 0 if status == "closed" else yuan * 100,
        "refunded_fen": 0,
        "item_count": 1,
        "placed_at": placed_at,
        "paid_at": placed_at,
        "completed_at": placed_at if status == "completed" else None,
        "source_modified_at": placed_at,
        "buyer_nick": customer_id,
        "receiver_name": None,
        "mobile": None,
        "province": None,
        "city": None,
    }
