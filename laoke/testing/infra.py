"""Infrastructure for tests: databases on a real server, brokers, free ports, and `eventually`."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from aiokafka import AIOKafkaConsumer

from laoke.contracts.envelope import EventEnvelope
from laoke.contracts.topics import ALL_TOPICS
from laoke.devstack.broker import EmbeddedBroker
from laoke.devstack.postgres import EmbeddedPostgres
from laoke.kit.kafka import ensure_topics
from laoke.kit.migrations import upgrade
from laoke.kit.settings import normalise_database_url
from laoke.stack import COMPONENTS

T = TypeVar("T")

# Durability is not what tests measure; these make the embedded server several times faster.
FAST_PG = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


# Below Linux's ephemeral range (32768-60999 by default): a port the kernel hands out for outgoing
# connections (to PostgreSQL, to the broker) can otherwise be taken between choosing it and binding it.
_TEST_PORTS = (20000, 32000)


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port_block(size: int = 1) -> int:
    """The first of `size` consecutive free loopback ports outside the ephemeral range."""
    for _ in range(200):
        base = random.randrange(_TEST_PORTS[0], _TEST_PORTS[1] - size)
        if all(_bindable(base + i) for i in range(size)):
            return base
    raise RuntimeError("no free block of ports")


def free_port() -> int:
    return free_port_block(1)


def with_database(url: str, name: str) -> str:
    parts = urlsplit(normalise_database_url(url))
    return urlunsplit(parts._replace(path=f"/{name}"))


def _asyncpg_url(url: str) -> str:
    return normalise_database_url(url).replace("postgresql+asyncpg://", "postgresql://", 1)


async def create_database(server_url: str, name: str) -> str:
    """A fresh, empty database on the server; returns its SQLAlchemy URL."""
    conn = await asyncpg.connect(_asyncpg_url(with_database(server_url, "postgres")))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(server_url, name)


async def drop_database(server_url: str, name: str) -> None:
    conn = await asyncpg.connect(_asyncpg_url(with_database(server_url, "postgres")))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def migrate_all(database_url: str) -> None:
    for component in COMPONENTS:
        await asyncio.to_thread(upgrade, component.package, database_url)


@dataclass
class Infra:
    """The real servers a test session runs against."""

    server_url: str  # any database on the PostgreSQL server; tests create their own
    bootstrap_servers: str
    postgres: EmbeddedPostgres | None
    broker: EmbeddedBroker | None

    @classmethod
    def start(cls, folder: Path) -> Infra:
        """Embedded servers, unless DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS name real ones."""
        postgres = broker = None
        server_url = os.environ.get("DATABASE_URL")
        if not server_url:
            postgres = EmbeddedPostgres(folder / "pgdata", free_port(), settings=FAST_PG)
            server_url = postgres.start("postgres")
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if not bootstrap:
            broker = EmbeddedBroker(free_port(), folder / "broker.log")
            bootstrap = broker.start()
        return cls(server_url, bootstrap, postgres, broker)

    def stop(self) -> None:
        if self.broker is not None:
            self.broker.stop()
        if self.postgres is not None:
            self.postgres.stop("immediate")


async def start_broker(folder: Path) -> EmbeddedBroker:
    broker = EmbeddedBroker(free_port(), folder / f"broker-{time.monotonic_ns()}.log")
    await asyncio.to_thread(broker.start)
    await ensure_topics(broker.bootstrap_servers, ALL_TOPICS, 6)
    return broker


async def eventually(check: Callable[[], Awaitable[T]], within: float = 15.0, interval: float = 0.05) -> T:
    """Retry an async check until it stops raising AssertionError (or time runs out)."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(interval)


async def events_on(
    bootstrap_servers: str,
    topic: str,
    shop_id: str,
    count: int,
    within: float = 30.0,
    types: frozenset[str] | None = None,
) -> list[EventEnvelope]:
    """The first `count` events of one shop on a topic (of the given `types`, if any), read from the
    broker from the beginning."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap_servers, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    found: list[EventEnvelope] = []
    try:
        deadline = time.monotonic() + within
        while len(found) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    event = EventEnvelope.model_validate_json(record.value)
                    if event.shop_id == shop_id and (types is None or event.type in types):
                        found.append(event)
    finally:
        await consumer.stop()
    return found
