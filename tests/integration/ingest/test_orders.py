"""Order upsert rules: one order per source id, stale updates never win, one event per real change."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from laoke.testing.factories import order_json
from laoke.testing.plugin import ShopClient
from laoke.testing.servers import ServerSet

BASE = order_json(
    "LC-1",
    buyer="buyer-7",
    status="created",
    total="99.90",
    placed_at="2026-11-20T09:00:00+08:00",
    modified_at="2026-11-20T09:00:00+08:00",
)


async def event_types(stack: ServerSet, shop_id: str) -> list[str]:
    engine = create_async_engine(stack["ingest"].settings.database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT event_type FROM ingest.outbox WHERE shop_id = :s ORDER BY id"), {"s": shop_id}
            )
            return [r[0] for r in rows]
    finally:
        await engine.dispose()


async def test_lifecycle_emits_one_event_per_real_change(shop: ShopClient, stack: ServerSet) -> None:
    post = shop.client.post
    first = await post("/api/v1/orders", json=BASE, headers=shop.headers())
    assert first.status_code == 201 and first.json()["outcome"] == "created"
    assert first.json()["order"]["paid_amount"] == "0.00"

    again = await post("/api/v1/orders", json=BASE, headers=shop.headers())
    assert again.status_code == 200 and again.json()["outcome"] == "unchanged"

    paid = {
        **BASE,
        "status": "paid",
        "paid_at": "2026-11-20T09:05:00+08:00",
        "modified_at": "2026-11-20T09:05:00+08:00",
    }
    updated = await post("/api/v1/orders", json=paid, headers=shop.headers())
    assert updated.json()["outcome"] == "updated"
    assert updated.json()["order"]["paid_amount"] == "99.90"
    assert updated.json()["order"]["id"] == first.json()["order"]["id"]

    assert await event_types(stack, shop.shop_id) == ["order.created", "order.paid"]


async def test_stale_update_never_overwrites_newer_state(shop: ShopClient, stack: ServerSet) -> None:
    completed = {
        **BASE,
        "order_id": "LC-2",
        "status": "completed",
        "modified_at": "2026-11-21T12:00:00+08:00",
    }
    assert (
        await shop.client.post("/api/v1/orders", json=completed, headers=shop.headers())
    ).status_code == 201
    stale = {**BASE, "order_id": "LC-2", "status": "paid", "modified_at": "2026-11-20T12:00:00+08:00"}
    response = await shop.client.post("/api/v1/orders", json=stale, headers=shop.headers())
    assert response.status_code == 200
    assert response.json()["outcome"] == "stale"
    assert response.json()["order"]["status"] == "completed"
    assert await event_types(stack, shop.shop_id) == ["order.completed"]


async def test_invalid_orders_are_rejected_and_nothing_is_written(shop: ShopClient, stack: ServerSet) -> None:
    bad_bodies = [
        {**BASE, "total_amount": "-1.00"},
        {**BASE, "total_amount": "1.234"},
        {**BASE, "paid_amount": "100.00"},  # more than the total
        {**BASE, "placed_at": "2026-11-20T09:00:00"},  # no time zone
        {**BASE, "buyer": {"external_id": ""}},
        {**BASE, "unexpected": 1},
        {k: v for k, v in BASE.items() if k != "buyer"},
    ]
    for body in bad_bodies:
        response = await shop.client.post("/api/v1/orders", json=body, headers=shop.headers())
        assert response.status_code == 422, body
        assert response.json()["error"] == "validation_error"
    assert await event_types(stack, shop.shop_id) == []
