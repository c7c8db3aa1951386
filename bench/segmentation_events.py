"""Incremental profile, RFM and segment updates: how many order events per second segmentation absorbs.

20,000 `order.completed` events for 5,000 buyers of one shop are produced straight onto
`laoke.orders.v1` as fast as the producer goes (bypassing ingest, so only the consumers are measured;
loyalty consumes them too, as in production), then we wait until segmentation has recorded every order.
Target (issue 4): ≥ 3,000 order events/s.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bench.common import BenchContext, write_result
from laoke.contracts.envelope import EventEnvelope, event_key
from laoke.contracts.orders import OrderEventPayload, OrderStatus
from laoke.contracts.topics import Topic
from laoke.kit.jsonutil import dumps
from laoke.kit.kafka import make_producer
from laoke.kit.settings import ServiceSettings

EVENTS = 20_000
BUYERS = 5_000
SHOP = f"shp_bench_events_{uuid.uuid4().hex[:6]}"


def envelope(i: int) -> tuple[str, bytes]:
    customer = f"cus_{i % BUYERS:016x}"
    placed = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=i)
    payload = OrderEventPayload(
        order_id=f"ord_{i:016x}",
        customer_id=customer,
        channel="api",
        external_order_id=f"E-{i}",
        status=OrderStatus.COMPLETED,
        total_fen=10_000,
        paid_fen=10_000,
        placed_at=placed,
        completed_at=placed,
        source_modified_at=placed,
    )
    event = EventEnvelope(
        type="order.completed", shop_id=SHOP, producer="bench", payload=payload.model_dump(mode="json")
    )
    return event_key(SHOP, customer), dumps(event.model_dump(mode="json"))


async def run(ctx: BenchContext) -> dict[str, object]:
    settings = ServiceSettings(
        service_name="bench", kafka_bootstrap_servers=ctx.stack.env["KAFKA_BOOTSTRAP_SERVERS"]
    )
    messages = [envelope(i) for i in range(EVENTS)]
    producer = make_producer(settings)
    await producer.start()
    started = time.perf_counter()
    try:
        sends = [await producer.send(Topic.ORDERS, value=v, key=k.encode()) for k, v in messages]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()
    produced = time.perf_counter() - started
    engine = create_async_engine(ctx.database_url)
    try:
        async with engine.connect() as conn:
            while True:
                done = await conn.scalar(
                    text("SELECT count(*) FROM segmentation.profile_orders WHERE shop_id = :s"), {"s": SHOP}
                )
                if done >= EVENTS or time.perf_counter() - started > 900:
                    break
                await asyncio.sleep(0.5)
    finally:
        await engine.dispose()
    elapsed = time.perf_counter() - started
    result = {
        "events": EVENTS,
        "buyers": BUYERS,
        "produce_seconds": round(produced, 2),
        "absorbed": done,
        "seconds": round(elapsed, 2),
        "events_per_second": round(done / elapsed, 1),
        "met": done / elapsed >= 3000,
    }
    write_result("segmentation_events", result)
    return result
