"""Request bodies for tests and benchmarks, so the order shape lives in one place as it grows."""

from __future__ import annotations

from typing import Any

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
