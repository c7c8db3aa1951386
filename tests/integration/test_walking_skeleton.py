"""An order travels gateway → ingest → outbox → Kafka → loyalty and segmentation."""

from __future__ import annotations

from laoke.testing.factories import order_json
from laoke.testing.infra import eventually
from laoke.testing.plugin import ShopClient

ORDER = order_json(
    "T-1001", buyer="buyer-42", nick="小李", total="128.50", completed_at="2026-11-22T10:00:00+08:00"
)


async def test_completed_order_credits_points_and_updates_profile(shop: ShopClient) -> None:
    response = await shop.client.post("/api/v1/orders", json=ORDER, headers=shop.headers())
    assert response.status_code == 201, response.text
    customer_id = response.json()["order"]["customer_id"]

    async def points_credited() -> None:
        member = await shop.client.get(f"/api/v1/loyalty/members/{customer_id}", headers=shop.headers())
        assert member.status_code == 200, member.text
        assert member.json()["points_available"] == 128
        assert member.json()["lifetime_earned"] == 128

    async def profile_updated() -> None:
        profile = await shop.client.get(f"/api/v1/customers/{customer_id}", headers=shop.headers())
        assert profile.status_code == 200, profile.text
        assert profile.json()["orders_count"] == 1
        assert profile.json()["total_spent"] == "128.50"

    await eventually(points_credited)
    await eventually(profile_updated)
