"""The outbox: an order accepted while the broker is down is published once the broker is back."""

from __future__ import annotations

import asyncio

import httpx
from aiokafka import AIOKafkaConsumer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from laoke.contracts.envelope import EventEnvelope
from laoke.contracts.topics import Topic
from laoke.kit.internal_auth import sign
from laoke.stack import component
from laoke.testing.factories import order_json
from laoke.testing.infra import eventually
from laoke.testing.plugin import Isolated
from laoke.testing.servers import TEST_INTERNAL_SECRET, build_app, common_settings, serve

ORDER = order_json("OUT-1", buyer="outage-buyer", total="42.00")


async def outbox_state(database_url: str) -> list[tuple[str, bool]]:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(text("SELECT event_type, published_at IS NOT NULL FROM ingest.outbox"))
            return [(r[0], r[1]) for r in rows]
    finally:
        await engine.dispose()


async def test_order_written_while_broker_is_down_is_delivered_after_it_returns(isolated: Isolated) -> None:
    app, settings = build_app(
        component("ingest"), **common_settings(isolated.database_url, isolated.broker.bootstrap_servers)
    )
    server = await serve(app, "ingest-outage", settings)
    try:
        await asyncio.to_thread(isolated.broker.stop)
        path = "/api/v1/orders"
        headers = sign(TEST_INTERNAL_SECRET, method="POST", path=path, shop_id="shp_outage")
        async with httpx.AsyncClient(base_url=server.url) as client:
            response = await client.post(path, json=ORDER, headers=headers)
        assert response.status_code == 201, response.text
        order_id = response.json()["order"]["id"]
        await asyncio.sleep(0.5)
        assert await outbox_state(isolated.database_url) == [("order.completed", False)]

        # The broker comes back empty (memory storage): the relay recreates topics and publishes.
        await asyncio.to_thread(isolated.broker.start)

        async def published() -> None:
            assert await outbox_state(isolated.database_url) == [("order.completed", True)]

        await eventually(published, within=45)
        consumer = AIOKafkaConsumer(
            Topic.ORDERS, bootstrap_servers=isolated.broker.bootstrap_servers, auto_offset_reset="earliest"
        )
        await consumer.start()
        events: list[EventEnvelope] = []
        try:
            # A fresh consumer on a just-restarted broker may need a few fetches before it is assigned.
            deadline = asyncio.get_running_loop().time() + 30
            while not events and asyncio.get_running_loop().time() < deadline:
                batch = await consumer.getmany(timeout_ms=1000)
                events += [EventEnvelope.model_validate_json(r.value) for rs in batch.values() for r in rs]
        finally:
            await consumer.stop()
        assert [(e.type, e.payload["order_id"], e.shop_id) for e in events] == [
            ("order.completed", order_id, "shp_outage")
        ]
    finally:
        await server.stop()
