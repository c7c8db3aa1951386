"""Automation reaction: from an `order.shipped` event on Kafka to the shipment notice recorded as sent.

A shop turns on the in-app shipment notice through the gateway; then 10,000 `order.shipped` events (one
per order, 2,000 buyers) are produced onto `laoke.orders.v1` open-loop at 500 events/s (each event is
due at its own time, so a slow consumer cannot slow the load down). Latency is each message's
`sent_at` minus the moment its event was produced. Segmentation and loyalty consume the same events,
as in production. Target (issue 6): p99 ≤ 200 ms at 500 events/s.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bench.common import BenchContext, summarize_ms, write_result
from laoke.contracts.envelope import EventEnvelope, event_key
from laoke.contracts.orders import OrderEventPayload, OrderStatus
from laoke.contracts.topics import Topic
from laoke.kit.jsonutil import dumps
from laoke.kit.kafka import make_producer
from laoke.kit.settings import ServiceSettings

RATE = int(os.environ.get("LAOKE_BENCH_AUTOMATION_RATE", "500"))
EVENTS = int(os.environ.get("LAOKE_BENCH_AUTOMATION_EVENTS", "10000"))
BUYERS = 2_000


def _event(shop_id: str, i: int) -> tuple[str, bytes]:
    customer = f"cus_{i % BUYERS:016x}"
    placed = datetime.now(UTC) - timedelta(days=1)
    payload = OrderEventPayload(
        order_id=f"ord_{i:016x}",
        customer_id=customer,
        channel="api",
        external_order_id=f"S-{i}",
        status=OrderStatus.SHIPPED,
        previous_status=OrderStatus.PAID,
        total_fen=9_900,
        paid_fen=9_900,
        placed_at=placed,
        paid_at=placed,
        shipped_at=placed + timedelta(hours=20),
        source_modified_at=placed + timedelta(hours=20),
    )
    event = EventEnvelope(
        type="order.shipped", shop_id=shop_id, producer="bench", payload=payload.model_dump(mode="json")
    )
    return event_key(shop_id, customer), dumps(event.model_dump(mode="json"))


async def run(ctx: BenchContext) -> dict[str, object]:
    async with httpx.AsyncClient(base_url=ctx.gateway_url, timeout=30) as client:
        shop = await ctx.new_shop(client, "自动化压测")
        headers = {"Authorization": f"Bearer {shop['api_key']}"}
        template = await client.post(
            "/api/v1/templates",
            json={"name": "发货通知", "channel": "inapp", "body": "您的订单{{order_id}}已发货"},
            headers=headers,
        )
        template.raise_for_status()
        automation = await client.put(
            "/api/v1/automations/shipment_notice",
            json={"channel": "inapp", "template_id": template.json()["id"]},
            headers=headers,
        )
        automation.raise_for_status()
    shop_id = shop["shop_id"]
    records = [_event(shop_id, i) for i in range(EVENTS)]
    producer = make_producer(
        ServiceSettings(
            service_name="bench", kafka_bootstrap_servers=ctx.stack.env["KAFKA_BOOTSTRAP_SERVERS"]
        )
    )
    produced_at: dict[str, datetime] = {}
    await producer.start()
    try:
        started = time.perf_counter()
        for i, (key, value) in enumerate(records):
            due = started + i / RATE
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            produced_at[f"ord_{i:016x}"] = datetime.now(UTC)
            await producer.send(Topic.ORDERS, value=value, key=key.encode())
        await producer.flush()
        produce_seconds = time.perf_counter() - started
    finally:
        await producer.stop()

    engine = create_async_engine(ctx.database_url)
    try:
        deadline = time.monotonic() + 300
        while True:
            async with engine.connect() as connection:
                rows = (
                    await connection.execute(
                        text(
                            "SELECT order_id, sent_at, created_at FROM messaging.messages "
                            "WHERE shop_id = :shop AND automation = 'shipment_notice' AND status = 'sent'"
                        ),
                        {"shop": shop_id},
                    )
                ).all()
            if len(rows) >= EVENTS or time.monotonic() > deadline:
                break
            await asyncio.sleep(1)
    finally:
        await engine.dispose()
    latencies = [(sent_at - produced_at[order_id]).total_seconds() * 1000 for order_id, sent_at, _ in rows]
    latency = summarize_ms(latencies)
    # Where the time goes: the consumer queueing the message, and the dispatcher sending it.
    queued = summarize_ms(
        [(created - produced_at[order_id]).total_seconds() * 1000 for order_id, _, created in rows]
    )
    dispatched = summarize_ms([(sent - created).total_seconds() * 1000 for _, sent, created in rows])
    result: dict[str, object] = {
        "events": EVENTS,
        "rate_per_second": RATE,
        "achieved_produce_rate": round(EVENTS / produce_seconds, 1),
        "messages_sent": len(rows),
        "latency": latency,
        "event_to_queued": queued,
        "queued_to_sent": dispatched,
    }
    result["met"] = len(rows) == EVENTS and latency["p99_ms"] <= 200
    write_result("automation_latency", result)
    return result
