"""An idle consumer polls the embedded broker less often, and goes back to short polls with the first
record: checked on a real aiokafka consumer, whose fetcher attribute the pacing sets."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from laoke.kit.consumer import FetchPacing
from laoke.kit.kafka import ensure_topics
from laoke.testing.plugin import Isolated


class QuickPacing(FetchPacing):
    IDLE_AFTER_SECONDS = 0.3


async def test_fetch_wait_lengthens_when_idle_and_shortens_with_records(isolated: Isolated) -> None:
    bootstrap = isolated.broker.bootstrap_servers
    topic = f"pacing-{uuid.uuid4().hex[:8]}"  # empty, so nothing arrives until this test sends it
    await ensure_topics(bootstrap, (topic,), 1)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id="pacing-test",
        fetch_max_wait_ms=10,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await consumer.start()
    await producer.start()
    try:
        pacing = QuickPacing(consumer, busy_ms=10, idle_ms=100)
        assert pacing.adjustable, "aiokafka's fetcher no longer has _fetch_max_wait_ms"
        fetcher = consumer._fetcher
        pacing.saw(bool(await consumer.getmany(timeout_ms=100)))
        assert fetcher._fetch_max_wait_ms == 10  # not idle long enough yet
        await asyncio.sleep(0.4)
        pacing.saw(bool(await consumer.getmany(timeout_ms=100)))
        assert pacing.idle and fetcher._fetch_max_wait_ms == 100

        await producer.send_and_wait(topic, b"{}")
        records: dict[object, list[object]] = {}
        for _ in range(50):
            records = await consumer.getmany(timeout_ms=200)
            if records:
                break
        assert records, "the record never arrived"
        pacing.saw(True)
        assert not pacing.idle and fetcher._fetch_max_wait_ms == 10

        unpaced = FetchPacing(consumer, busy_ms=10, idle_ms=None)  # Kafka: no idle wait configured
        assert not unpaced.adjustable
    finally:
        await producer.stop()
        await consumer.stop()
