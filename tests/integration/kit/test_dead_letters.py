"""Poison events go to `<topic>.dlq` with their error after bounded retries; the partition moves on."""

from __future__ import annotations

import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from laoke.contracts.envelope import EventEnvelope, event_key
from laoke.contracts.topics import Topic, dlq_topic
from laoke.testing.infra import eventually
from laoke.testing.plugin import ShopClient
from laoke.testing.servers import ServerSet
from tests.integration.loyalty.test_earning import completed_order_event


async def dead_letters(bootstrap: str, marker: str) -> list[tuple[bytes, dict[str, bytes]]]:
    consumer = AIOKafkaConsumer(
        dlq_topic(Topic.ORDERS), bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    try:
        found = []
        batches = await consumer.getmany(timeout_ms=2000)
        for records in batches.values():
            for r in records:
                if marker.encode() in (r.value or b""):
                    found.append((r.value or b"", {k: v for k, v in r.headers}))
        return found
    finally:
        await consumer.stop()


async def test_unparseable_and_invalid_events_are_dead_lettered(shop: ShopClient, stack: ServerSet) -> None:
    bootstrap = stack["loyalty"].settings.kafka_bootstrap_servers
    marker = uuid.uuid4().hex
    broken_json = f'{{"type": "order.completed", "marker": "{marker}"'.encode()
    bad_payload = EventEnvelope(
        type="order.completed", shop_id=shop.shop_id, producer="test", payload={"marker": marker}
    )
    good = completed_order_event(shop.shop_id, "cus_after_poison", "ord_after_poison", 1000)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        key = event_key(shop.shop_id, "cus_after_poison").encode()
        for value in (broken_json, bad_payload.model_dump_json().encode(), good.model_dump_json().encode()):
            await producer.send_and_wait(Topic.ORDERS, value, key=key)
    finally:
        await producer.stop()

    async def both_dead_lettered() -> None:
        found = await dead_letters(bootstrap, marker)
        # One per consumer group that handles order.completed (loyalty) or any order event (segmentation),
        # for each of the two poison events.
        consumers = {(h["laoke-consumer"], b"invalid envelope" in h["laoke-error"]) for _, h in found}
        assert (b"loyalty", True) in consumers and (b"loyalty", False) in consumers
        assert all(h["laoke-source"].startswith(Topic.ORDERS.encode()) for _, h in found)

    await eventually(both_dead_lettered, within=30)

    async def later_event_still_handled() -> None:
        member = await shop.client.get("/api/v1/loyalty/members/cus_after_poison", headers=shop.headers())
        assert member.status_code == 200 and member.json()["points_available"] == 10

    await eventually(later_event_still_handled)
