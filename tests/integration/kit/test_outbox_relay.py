"""The outbox relay with several replicas: one publishes at a time (per-buyer order holds across
replicas), and a batch goes out whole, in the order the events were written."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from laoke.contracts.envelope import EventEnvelope
from laoke.contracts.topics import Topic
from laoke.kit.db import Database
from laoke.kit.kafka import make_producer
from laoke.kit.outbox import Outbox, OutboxRelay
from laoke.kit.settings import ServiceSettings
from laoke.testing.plugin import Isolated
from services.ingest.models import plumbing


async def _published(db: Database) -> list[bool]:
    async with db.reads() as session:
        rows = await session.execute(
            select(plumbing.outbox.c.published_at.is_not(None)).order_by(plumbing.outbox.c.id)
        )
        return [bool(r[0]) for r in rows]


async def _topic_events(bootstrap: str, expected: int) -> list[EventEnvelope]:
    consumer = AIOKafkaConsumer(Topic.ORDERS, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    events: list[EventEnvelope] = []
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while len(events) < expected and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            events += [EventEnvelope.model_validate_json(r.value) for rs in batch.values() for r in rs]
    finally:
        await consumer.stop()
    return events


async def test_a_replica_publishes_nothing_while_another_holds_the_relay_then_everything_in_order(
    isolated: Isolated,
) -> None:
    settings = ServiceSettings(
        service_name="ingest",
        database_url=isolated.database_url,
        kafka_bootstrap_servers=isolated.broker.bootstrap_servers,
    )
    db = Database(settings)
    outbox = Outbox(plumbing.outbox, producer="ingest")
    relay = OutboxRelay(db, plumbing.outbox, settings, (Topic.ORDERS,))
    producer = make_producer(settings)
    await producer.start()
    other = create_async_engine(isolated.database_url)
    try:
        async with db.transaction() as session:
            for n in range(3):
                await outbox.add(
                    session, topic=Topic.ORDERS, event_type="order.created", shop_id="shp_relay",
                    key="shp_relay:cus_1", payload={"n": n},
                )  # fmt: skip

        # Another replica is in the middle of a batch: it holds the relay's lock until it commits.
        async with other.connect() as replica:
            held = await replica.scalar(select(func.pg_try_advisory_xact_lock(relay.lock_key)))
            assert held
            assert await relay.publish_batch(producer) == 0
            assert await _published(db) == [False, False, False]
            await replica.rollback()

        # With the broker's metadata already requested (as on a wake-up), and without.
        metadata = asyncio.ensure_future(producer.client.fetch_all_metadata())
        assert await relay.publish_batch(producer, metadata) == 3
        assert await _published(db) == [True, True, True]
        assert await relay.publish_batch(producer) == 0  # nothing is published twice

        async with db.transaction() as session:
            await outbox.add(
                session, topic=Topic.ORDERS, event_type="order.paid", shop_id="shp_relay",
                key="shp_relay:cus_1", payload={"n": 3},
            )  # fmt: skip
        assert await relay.publish_batch(producer) == 1

        # One buyer's events (one key, so one partition) in the order they were written.
        events = await _topic_events(settings.kafka_bootstrap_servers, 4)
        assert [e.payload["n"] for e in events] == [0, 1, 2, 3]
        async with db.reads() as session:
            # The lock was a transaction's own: nothing of it outlives the batch. (Only this test's
            # database: the server is shared with other tests' services, which take advisory locks too.)
            locks = await session.scalar(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = "
                    "(SELECT oid FROM pg_database WHERE datname = current_database())"
                )
            )
        assert locks == 0
    finally:
        await producer.stop()
        await other.dispose()
        await db.dispose()
