"""Batched handlers: a run of events in one transaction, still exactly once, and a poison event in a
run costs only itself (the run is retried event by event); a run spans a fetch's partitions, each
buyer's events still in order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaProducer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.contracts.envelope import EventEnvelope
from laoke.contracts.topics import Topic
from laoke.kit.consumer import Batched, EventConsumer
from laoke.kit.db import Database
from laoke.kit.settings import ServiceSettings
from laoke.testing.infra import eventually
from laoke.testing.plugin import Isolated
from services.segmentation.models import plumbing


async def _produce(
    bootstrap_servers: str, topic: str, records: list[tuple[EventEnvelope, dict[str, Any]]]
) -> None:
    """Each event onto `topic` with its `send` arguments (a key, or a partition)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers)
    await producer.start()
    try:
        for event, placement in records:
            await producer.send(topic, event.model_dump_json().encode(), **placement)
        await producer.flush()
    finally:
        await producer.stop()


@asynccontextmanager
async def _running(consumer: EventConsumer, db: Database) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        yield
    finally:
        stop.set()
        await task
        await db.dispose()


async def test_runs_are_batched_exactly_once_and_poison_is_isolated(isolated: Isolated) -> None:
    settings = ServiceSettings(
        service_name="batch-test",
        database_url=isolated.database_url,
        kafka_bootstrap_servers=isolated.broker.bootstrap_servers,
        consumer_max_attempts=2,
    )
    db = Database(settings)
    runs: list[list[str]] = []
    singles: list[str] = []

    async def record(session: AsyncSession, event: EventEnvelope) -> None:
        if event.payload.get("poison"):
            raise ValueError("poison")
        # Real writes, so a failed batch must roll back the other events' effects too.
        await session.execute(
            text(
                "INSERT INTO segmentation.segments (id, shop_id, name, rule) VALUES (:id, 'shp_t', 'x', '{}')"
            ),
            {"id": event.payload["n"]},
        )

    async def many(session: AsyncSession, events: list[EventEnvelope]) -> None:
        runs.append([e.payload["n"] for e in events])
        for event in events:
            await record(session, event)

    async def one(session: AsyncSession, event: EventEnvelope) -> None:
        singles.append(event.payload["n"])
        await record(session, event)

    consumer = EventConsumer(
        name="batch-test",
        db=db,
        settings=settings,
        processed_table=plumbing.processed_events,
        topics=(Topic.ORDERS,),
        handlers={"test.batched": Batched(many=many, one=one)},
        retry_base_seconds=0.01,
    )
    events = [
        EventEnvelope(type="test.batched", shop_id="shp_t", producer="test", payload={"n": f"n{i}"})
        for i in range(6)
    ]
    poison = EventEnvelope(
        type="test.batched", shop_id="shp_t", producer="test", payload={"n": "bad", "poison": True}
    )
    sequence = [*events[:3], events[1], poison, *events[3:]]  # a duplicate and a poison event in the run
    same_partition = {"key": b"same-partition"}
    await _produce(isolated.broker.bootstrap_servers, Topic.ORDERS, [(e, same_partition) for e in sequence])
    async with _running(consumer, db):

        async def stored() -> None:
            async with db.transaction() as session:
                ids = set(
                    await session.scalars(
                        text("SELECT id FROM segmentation.segments WHERE shop_id = 'shp_t'")
                    )
                )
            assert ids == {f"n{i}" for i in range(6)}

        await eventually(stored, within=30)
        assert runs and len(runs[0]) > 1, "the run was handed over as one batch"
        assert "bad" in singles, "after the batch failed, its events were retried one by one"
        async with db.transaction() as session:
            handled = await session.scalar(
                text("SELECT count(*) FROM segmentation.processed_events WHERE consumer = 'batch-test'")
            )
        assert handled == 6, "each good event is recorded once; the duplicate and the poison are not"


async def test_a_fetch_across_partitions_is_handled_in_few_runs_each_buyer_in_order(
    isolated: Isolated,
) -> None:
    """A run takes the records of every partition in the fetch (one transaction, not one per
    partition), and each buyer's events (one partition) still arrive in the order they were sent."""
    settings = ServiceSettings(
        service_name="merge-test",
        database_url=isolated.database_url,
        kafka_bootstrap_servers=isolated.broker.bootstrap_servers,
    )
    db = Database(settings)
    runs: list[list[tuple[int, int]]] = []

    async def many(session: AsyncSession, events: list[EventEnvelope]) -> None:
        runs.append([(e.payload["buyer"], e.payload["n"]) for e in events])

    async def one(session: AsyncSession, event: EventEnvelope) -> None:
        runs.append([(event.payload["buyer"], event.payload["n"])])

    consumer = EventConsumer(
        name="merge-test",
        db=db,
        settings=settings,
        processed_table=plumbing.processed_events,
        topics=(Topic.CUSTOMERS,),
        handlers={"test.merged": Batched(many=many, one=one)},
    )
    buyers, per_buyer = 6, 5
    records = [
        (
            EventEnvelope(type="test.merged", shop_id="shp_m", producer="test", payload={"buyer": b, "n": n}),
            {"partition": b},  # buyer b on partition b, as a key's hash would place it
        )
        for n in range(per_buyer)
        for b in range(buyers)
    ]
    await _produce(isolated.broker.bootstrap_servers, Topic.CUSTOMERS, records)
    async with _running(consumer, db):

        async def all_handled() -> None:
            assert sum(len(run) for run in runs) == buyers * per_buyer

        await eventually(all_handled, within=30)
        seen = [item for run in runs for item in run]
        assert sorted(seen) == [(b, n) for b in range(buyers) for n in range(per_buyer)], "each once"
        for buyer in range(buyers):
            assert [n for b, n in seen if b == buyer] == list(range(per_buyer)), f"buyer {buyer} in order"
        assert any(len({b for b, _ in run}) > 1 for run in runs), "a run took several partitions' records"
        assert len(runs) < buyers, f"fewer runs than partitions: {[len(run) for run in runs]}"
