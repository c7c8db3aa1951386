"""Driving the loyalty service through the gateway, and straight onto Kafka for out-of-order events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaProducer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from laoke.contracts.envelope import EventEnvelope, event_key
from laoke.contracts.orders import ORDER_EVENT_TYPES, OrderStatus
from laoke.contracts.topics import Topic
from laoke.testing.infra import eventually
from laoke.testing.plugin import ShopClient
from laoke.testing.servers import ServerSet

T0 = datetime(2026, 3, 1, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai


async def set_program(shop: ShopClient, **settings: Any) -> dict[str, Any]:
    response = await shop.client.put("/api/v1/loyalty/program", json=settings, headers=shop.headers())
    assert response.status_code == 200, response.text
    return dict(response.json())


async def member(shop: ShopClient, customer_id: str) -> dict[str, Any]:
    response = await shop.client.get(f"/api/v1/loyalty/members/{customer_id}", headers=shop.headers())
    assert response.status_code == 200, response.text
    return dict(response.json())


async def member_reaches(shop: ShopClient, customer_id: str, **expected: Any) -> dict[str, Any]:
    async def check() -> dict[str, Any]:
        response = await shop.client.get(f"/api/v1/loyalty/members/{customer_id}", headers=shop.headers())
        assert response.status_code == 200, response.text
        body = dict(response.json())
        assert {k: body[k] for k in expected} == expected, body
        return body

    return await eventually(check, within=20)


async def ledger(shop: ShopClient, customer_id: str) -> list[dict[str, Any]]:
    response = await shop.client.get(
        f"/api/v1/loyalty/members/{customer_id}/ledger", params={"limit": 200}, headers=shop.headers()
    )
    assert response.status_code == 200, response.text
    return list(reversed(response.json()["items"]))  # oldest first


def order_event(
    shop_id: str,
    customer_id: str,
    order_id: str,
    status: OrderStatus,
    *,
    paid_fen: int,
    refunded_fen: int = 0,
    modified: datetime,
    completed: bool = False,
    coupon_codes: list[str] | None = None,
) -> EventEnvelope:
    return EventEnvelope(
        type=ORDER_EVENT_TYPES[status],
        shop_id=shop_id,
        producer="test",
        payload={
            "order_id": order_id,
            "customer_id": customer_id,
            "channel": "api",
            "external_order_id": order_id,
            "status": status.value,
            "total_fen": paid_fen,
            "paid_fen": paid_fen,
            "refunded_fen": refunded_fen,
            "placed_at": (modified - timedelta(days=1)).isoformat(),
            "completed_at": modified.isoformat() if completed else None,
            "source_modified_at": modified.isoformat(),
            "coupon_codes": coupon_codes or [],
        },
    )


async def publish(stack: ServerSet, *events: EventEnvelope) -> None:
    """Straight onto the orders topic, in this order (one buyer's events share a partition)."""
    await publish_on(stack, Topic.ORDERS, *events)


async def publish_on(stack: ServerSet, topic: str, *events: EventEnvelope) -> None:
    """Straight onto `topic`, in this order, keyed by buyer as the services key them."""
    producer = AIOKafkaProducer(bootstrap_servers=stack["loyalty"].settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        for event in events:
            customer = str(event.payload["customer_id"])
            await producer.send_and_wait(
                topic, event.model_dump_json().encode(), key=event_key(event.shop_id, customer).encode()
            )
    finally:
        await producer.stop()


async def invariants_hold(stack: ServerSet, shop_id: str) -> None:
    """Every member's balances equal the sums of its ledger and of its lots; nothing negative."""
    engine = create_async_engine(stack["loyalty"].settings.database_url)
    try:
        async with engine.connect() as conn:
            broken = (
                await conn.execute(
                    text(
                        """
                        SELECT m.customer_id, m.points_balance, m.points_pending,
                               e.points AS ledger_points, e.pending AS ledger_pending, l.remaining AS lots
                        FROM loyalty.members m
                        LEFT JOIN (SELECT customer_id, sum(points) AS points, sum(pending) AS pending
                                   FROM loyalty.points_ledger WHERE shop_id = :shop
                                   GROUP BY 1) e USING (customer_id)
                        LEFT JOIN (SELECT customer_id, sum(remaining) AS remaining
                                   FROM loyalty.points_lots WHERE shop_id = :shop
                                   GROUP BY 1) l USING (customer_id)
                        WHERE m.shop_id = :shop
                          AND (m.points_balance <> coalesce(e.points, 0)
                               OR m.points_pending <> coalesce(e.pending, 0)
                               OR m.points_balance <> coalesce(l.remaining, 0)
                               OR m.points_balance < 0 OR m.points_pending < 0)
                        """
                    ),
                    {"shop": shop_id},
                )
            ).all()
    finally:
        await engine.dispose()
    assert broken == [], f"ledger invariants broken: {broken}"
