"""Kafka clients configured one way for the whole stack, and topic creation at start-up.

Topics are created explicitly because the embedded broker (Tansu) auto-creates an unknown topic on
first produce with its own partition count, which would break the per-buyer ordering plan.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from laoke.kit.settings import ServiceSettings

log = structlog.get_logger(__name__)


def make_producer(settings: ServiceSettings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id=f"laoke-{settings.service_name}",
        acks="all",
        enable_idempotence=settings.kafka_idempotence,
        linger_ms=0,  # batches still form under load; an idle stack should not wait
        request_timeout_ms=10_000,
        max_batch_size=256 * 1024,
    )


async def ensure_topics(
    bootstrap_servers: str, topics: Iterable[str], partitions: int, replication_factor: int = 1
) -> list[str]:
    """Create the topics that do not exist yet; returns the ones created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if missing:
            # Another process may win the race; then the topics exist, which is all we need.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [
                        NewTopic(name=t, num_partitions=partitions, replication_factor=replication_factor)
                        for t in missing
                    ]
                )
            log.info("topics_created", topics=missing, partitions=partitions)
        return missing
    finally:
        await admin.close()
