"""Buying through the API at known times, and waiting for the profile to catch up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from laoke.testing.factories import order_json
from laoke.testing.infra import eventually
from laoke.testing.plugin import ShopClient

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def at(days_ago: float) -> str:
    return (NOW - timedelta(days=days_ago)).isoformat()


async def buy(shop: ShopClient, order_id: str, buyer: str, days_ago: float, total: str) -> str:
    body = order_json(order_id, buyer=buyer, total=total, placed_at=at(days_ago), completed_at=at(days_ago))
    response = await shop.client.post("/api/v1/orders", json=body, headers=shop.headers())
    assert response.status_code == 201, response.text
    return response.json()["order"]["customer_id"]


async def profile(shop: ShopClient, customer_id: str, orders: int) -> dict[str, Any]:
    async def ready() -> dict[str, Any]:
        response = await shop.client.get(f"/api/v1/customers/{customer_id}", headers=shop.headers())
        assert response.status_code == 200, response.text
        assert response.json()["orders_count"] == orders
        return response.json()

    return await eventually(ready, within=20)
