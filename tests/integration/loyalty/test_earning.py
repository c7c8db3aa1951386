"""Points are credited exactly once per completed order, however often its event is delivered."""

from __future__ import annotations

import httpx
from aiokafka import AIOKafkaProducer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from laoke.contracts.envelope import EventEnvelope, event_key
from laoke.contracts.topics import Topic
from laoke.testing.factories import order_json
from laoke.testing.infra import eventually
from laoke.testing.plugin import ShopClient
from laoke.testing.servers import ServerSet


def completed_order_event(shop_id: str, customer_id: str, order_id: str, paid_fen: int) -> EventEnvelope:
    return EventEnvelope(
        type="order.completed",
        shop_id=shop_id,
        producer="test",
        payload={
            "order_id": order_id,
            "customer_id": customer_id,
            "channel": "api",
            "external_order_id": order_id,
            "status": "completed",
            "total_fen": paid_fen,
            "paid_fen": paid_fen,
            "placed_at": "2026-11-20T01:00:00Z",
            "source_modified_at": "2026-11-20T01:00:00Z",
        },
    )


async def handled_count(loyalty_url: str, outcome: str) -> float:
    metrics = (await httpx.AsyncClient().get(f"{loyalty_url}/metrics")).text
    for line in metrics.splitlines():
        if (
            line.startswith("laoke_events_handled_total{")
            and 'consumer="loyalty"' in line
            and f'outcome="{outcome}"' in line
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_same_event_delivered_twice_credits_once(shop: ShopClient, stack: ServerSet) -> None:
    event = completed_order_event(shop.shop_id, "cus_twice", "ord_twice", 25_099)
    duplicates_before = await handled_count(stack["loyalty"].url, "duplicate")
    producer = AIOKafkaProducer(bootstrap_servers=stack["loyalty"].settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        raw = event.model_dump_json().encode()
        key = event_key(shop.shop_id, "cus_twice").encode()
        await producer.send_and_wait(Topic.ORDERS, raw, key=key)
        await producer.send_and_wait(Topic.ORDERS, raw, key=key)
    finally:
        await producer.stop()

    async def second_delivery_seen() -> None:
        assert await handled_count(stack["loyalty"].url, "duplicate") >= duplicates_before + 1

    await eventually(second_delivery_seen)
    member = (await shop.client.get("/api/v1/loyalty/members/cus_twice", headers=shop.headers())).json()
    assert member["points_available"] == 250
    engine = create_async_engine(stack["loyalty"].settings.database_url)
    try:
        async with engine.connect() as conn:
            entries = await conn.scalar(
                text("SELECT count(*) FROM loyalty.points_ledger WHERE shop_id = :s"), {"s": shop.shop_id}
            )
    finally:
        await engine.dispose()
    assert entries == 1


async def test_paid_but_not_completed_order_earns_nothing_yet(shop: ShopClient) -> None:
    order = order_json("NP-1", buyer="np", status="paid", total="300.00")
    created = (await shop.client.post("/api/v1/orders", json=order, headers=shop.headers())).json()["order"]

    async def profile_counted() -> None:
        profile = await shop.client.get(f"/api/v1/customers/{created['customer_id']}", headers=shop.headers())
        assert profile.status_code == 200 and profile.json()["orders_count"] == 1

    await eventually(profile_counted)

    async def member_without_points() -> None:
        # Paid is not completed: a member (every buyer is one), but no points yet under the default
        # programme, which credits on completion.
        member = await shop.client.get(
            f"/api/v1/loyalty/members/{created['customer_id']}", headers=shop.headers()
        )
        assert member.status_code == 200, member.text
        assert (member.json()["points_available"], member.json()["points_pending"]) == (0, 0)

    await eventually(member_without_points)
