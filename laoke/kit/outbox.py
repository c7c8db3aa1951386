"""Transactional outbox: events are rows written in the same transaction as the change they announce,
and a relay publishes them afterwards. Nothing is ever published straight from a request handler, so
an event exists if and only if its change was committed.

The relay wakes on a PostgreSQL NOTIFY fired by an insert trigger (low latency without busy polling)
and polls once a second as a safety net. Batches are claimed with `FOR UPDATE SKIP LOCKED` under a
transaction-level advisory lock: any number of replicas may run the relay, but one batch is in
flight at a time per service, so the events of one buyer reach the broker in the order they were
written. A crash after publishing but before marking re-publishes the batch; consumers dedupe.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog
from prometheus_client import Counter, Gauge
from pydantic import BaseModel
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    MetaData,
    String,
    Table,
    Uuid,
    any_,
    bindparam,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.contracts.envelope import EventEnvelope
from laoke.kit import failpoints
from laoke.kit.context import current_correlation_id
from laoke.kit.db import Database
from laoke.kit.jsonutil import dumps
from laoke.kit.kafka import ensure_topics, make_producer
from laoke.kit.settings import ServiceSettings

log = structlog.get_logger(__name__)

OUTBOX_PUBLISHED = Counter("laoke_outbox_published_total", "Events published by the relay", ["topic"])
OUTBOX_FAILURES = Counter("laoke_outbox_publish_failures_total", "Relay batches that failed to publish")
OUTBOX_BACKLOG = Gauge("laoke_outbox_backlog", "Unpublished outbox rows seen by the last relay pass")


@dataclass(frozen=True)
class PlumbingTables:
    outbox: Table
    processed_events: Table


def plumbing_tables(metadata: MetaData) -> PlumbingTables:
    """The outbox and the consumer dedupe table, created in the service's own schema."""
    outbox = Table(
        "outbox",
        metadata,
        Column("id", BigInteger, Identity(), primary_key=True),
        Column("event_id", Uuid, nullable=False, unique=True),
        Column("topic", String(200), nullable=False),
        Column("key", String(300), nullable=False),
        Column("event_type", String(100), nullable=False),
        Column("shop_id", String(64), nullable=False),
        Column("envelope", JSONB, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("published_at", DateTime(timezone=True)),
        Index("ix_outbox_unpublished", "id", postgresql_where=text("published_at IS NULL")),
        Index("ix_outbox_created_at", "created_at"),
    )
    processed = Table(
        "processed_events",
        metadata,
        Column("consumer", String(100), primary_key=True),
        Column("event_id", Uuid, primary_key=True),
        Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )
    return PlumbingTables(outbox=outbox, processed_events=processed)


def notify_channel(schema: str) -> str:
    return f"laoke_outbox_{schema}"


def outbox_trigger_ddl(schema: str) -> list[str]:
    """DDL for the insert trigger that wakes relays; used by each service's first migration."""
    channel = notify_channel(schema)
    return [
        f"""
        CREATE OR REPLACE FUNCTION {schema}.notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_notify('{channel}', ''); RETURN NULL; END $$;
        """,
        f"""
        CREATE TRIGGER outbox_notify AFTER INSERT ON {schema}.outbox
        FOR EACH STATEMENT EXECUTE FUNCTION {schema}.notify_outbox();
        """,
    ]


@dataclass(frozen=True)
class OutboxEvent:
    """An event to write, before it has an envelope."""

    topic: str
    event_type: str
    shop_id: str
    key: str
    payload: BaseModel | dict[str, Any]
    occurred_at: datetime | None = None


class Outbox:
    """Writes events into the service's outbox inside the caller's transaction."""

    def __init__(self, table: Table, producer: str) -> None:
        self.table = table
        self.producer = producer
        # Built once: values are bound at execute time, so each event costs no statement building.
        self._insert = table.insert()

    async def add(
        self,
        session: AsyncSession,
        *,
        topic: str,
        event_type: str,
        shop_id: str,
        key: str,
        payload: BaseModel | dict[str, Any],
        occurred_at: datetime | None = None,
    ) -> EventEnvelope:
        event = OutboxEvent(topic, event_type, shop_id, key, payload, occurred_at)
        return (await self.add_many(session, [event]))[0]

    async def add_many(self, session: AsyncSession, events: list[OutboxEvent]) -> list[EventEnvelope]:
        """Several events in one statement, in this order (the relay publishes them in `id` order)."""
        rows = [self.row(event) for event in events]
        if rows:
            await session.execute(self._insert, [row for _, row in rows])
        return [envelope for envelope, _ in rows]

    def row(self, event: OutboxEvent) -> tuple[EventEnvelope, dict[str, Any]]:
        """The event's envelope and its outbox row's values (`event_id`, `topic`, `key`, `event_type`,
        `shop_id`, `envelope`), for a statement that writes the event together with what it announces."""
        envelope = self._envelope(event)
        return envelope, {
            "event_id": envelope.event_id,
            "topic": event.topic,
            "key": event.key,
            "event_type": event.event_type,
            "shop_id": event.shop_id,
            "envelope": envelope.model_dump(mode="json"),
        }

    def _envelope(self, event: OutboxEvent) -> EventEnvelope:
        payload = event.payload
        body = payload.model_dump(mode="json") if isinstance(payload, BaseModel) else payload
        fields: dict[str, Any] = {
            "type": event.event_type,
            "shop_id": event.shop_id,
            "producer": self.producer,
            "payload": body,
            "correlation_id": current_correlation_id(),
        }
        if event.occurred_at is not None:
            fields["occurred_at"] = event.occurred_at.astimezone(UTC)  # the contract says UTC
        return EventEnvelope(**fields)


def envelope_sql(producer: str, event_type: str, payload_sql: str, shop_sql: str = ":shop") -> str:
    """The envelope of an event written by a set-based SQL statement (many events in one statement).

    Binds `:as_of` and, unless `shop_sql` names a column, `:shop`; `producer`, `event_type`,
    `payload_sql` and `shop_sql` must be constants of the calling module, never input."""
    return f"""jsonb_build_object(
        'event_id', gen_random_uuid(), 'type', '{event_type}', 'version', 1, 'shop_id', {shop_sql},
        'occurred_at', to_char(:as_of AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'correlation_id', NULL, 'producer', '{producer}', 'payload', {payload_sql})"""


def _advisory_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def _asyncpg_dsn(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+asyncpg://", "postgresql://", 1)


class OutboxRelay:
    """Publishes committed outbox rows to Kafka, in order, at least once."""

    def __init__(
        self,
        db: Database,
        table: Table,
        settings: ServiceSettings,
        topics: tuple[str, ...],
        *,
        batch_size: int = 500,
        poll_seconds: float = 1.0,
        linger_seconds: float = 0.003,
    ) -> None:
        self.db = db
        self.table = table
        self.settings = settings
        self.topics = topics
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.linger_seconds = linger_seconds
        self.lock_key = _advisory_key(f"outbox-relay:{table.schema}")
        self._wake = asyncio.Event()
        # Built once: the relay runs these for every batch.
        # The relay lock and the claim in one statement (one round trip): the lock is an uncorrelated
        # subquery, which PostgreSQL runs once, before the scan; not holding it, the claim finds nothing.
        self._claim = (
            select(table.c.id, table.c.topic, table.c.key, table.c.envelope)
            .where(select(func.pg_try_advisory_xact_lock(self.lock_key)).scalar_subquery())
            .where(table.c.published_at.is_(None))
            .order_by(table.c.id)
            .limit(batch_size)
            .with_for_update(skip_locked=True)
        )
        # `= ANY(:ids)` keeps one SQL text (one prepared statement) whatever the batch size.
        self._mark_published = (
            update(table)
            .where(table.c.id == any_(bindparam("ids", type_=ARRAY(BigInteger))))
            .values(published_at=func.now())
        )

    async def run(self, stop: asyncio.Event) -> None:
        listener: asyncpg.Connection | None = None
        producer = None
        backoff = 0.2
        while not stop.is_set():
            try:
                if listener is None or listener.is_closed():
                    listener = await self._listen()
                if producer is None:
                    await ensure_topics(
                        self.settings.kafka_bootstrap_servers,
                        self.topics,
                        self.settings.topic_partitions,
                        self.settings.topic_replication_factor,
                    )
                    producer = make_producer(self.settings)
                    await producer.start()
                woken = self._wake.is_set()
                self._wake.clear()
                # The topic check's metadata request goes out on a wake-up and comes back during the
                # linger, instead of being one more broker round trip that every event waits for.
                metadata = (
                    asyncio.ensure_future(producer.client.fetch_all_metadata())
                    if woken and self.settings.relay_verify_topics
                    else None
                )
                try:
                    # A short linger lets one relay transaction carry the events of several commits;
                    # without it, every order costs a whole claim/publish/mark transaction of its own.
                    await asyncio.sleep(self.linger_seconds)
                    published = await self.publish_batch(producer, metadata)
                finally:
                    _settle(metadata)
                backoff = 0.2
                if published < self.batch_size:
                    await self._sleep(stop)
            except (failpoints.FailpointCrash, asyncio.CancelledError):
                raise
            except Exception as exc:
                OUTBOX_FAILURES.inc()
                log.warning("outbox_relay_error", error=f"{type(exc).__name__}: {exc}", retry_in=backoff)
                if producer is not None:
                    await _quietly(producer.stop())
                    producer = None
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
        if producer is not None:
            await _quietly(producer.stop())
        if listener is not None:
            await _quietly(listener.close())

    async def _listen(self) -> asyncpg.Connection:
        conn = await asyncpg.connect(_asyncpg_dsn(self.db.engine.url.render_as_string(hide_password=False)))
        await conn.add_listener(notify_channel(self.table.schema or ""), lambda *_: self._wake.set())
        return conn

    async def _sleep(self, stop: asyncio.Event) -> None:
        waiters = {asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())}
        _, pending = await asyncio.wait(
            waiters, timeout=self.poll_seconds, return_when=asyncio.FIRST_COMPLETED
        )
        for task in pending:
            task.cancel()

    async def publish_batch(self, producer: Any, metadata: asyncio.Future[Any] | None = None) -> int:
        """Publish up to a batch of unpublished rows; `metadata`, the broker's metadata when already
        requested, saves the topic check its own request."""
        async with self.db.transaction() as session:
            # Empty too while another replica holds the lock: its batch keeps per-buyer order.
            rows = (await session.execute(self._claim)).all()
            OUTBOX_BACKLOG.set(len(rows))
            if not rows:
                return 0
            if self.settings.relay_verify_topics:
                fresh = await (metadata if metadata is not None else producer.client.fetch_all_metadata())
                await self._check_topics(producer, {row.topic for row in rows}, fresh)
            futures = [
                await producer.send(row.topic, dumps(row.envelope), key=row.key.encode()) for row in rows
            ]
            await asyncio.gather(*futures)
            failpoints.hit("relay.after_publish")
            await session.execute(self._mark_published, {"ids": [row.id for row in rows]})
        for row in rows:
            OUTBOX_PUBLISHED.labels(row.topic).inc()
        return len(rows)

    async def _check_topics(self, producer: Any, topics: set[str], fresh: Any) -> None:
        """Make sure the broker has these topics and the producer sees them as they are.

        A broker that lost its state (the embedded one keeps topics in memory) auto-creates a topic on
        the first produce with its own partition count and acks the record, even one addressed to a
        partition beyond that count, which no consumer will ever read. The producer's cached metadata
        would address exactly such partitions, so before each batch: recreate missing topics with our
        partition count, and refresh the producer's view when it differs from the broker's.
        """
        missing = [t for t in topics if fresh.partitions_for_topic(t) is None]
        if missing:
            log.warning("outbox_topics_missing", topics=missing)
            await ensure_topics(
                self.settings.kafka_bootstrap_servers,
                self.topics,
                self.settings.topic_partitions,
                self.settings.topic_replication_factor,
            )
        cached = producer.client.cluster
        if missing or any(fresh.partitions_for_topic(t) != cached.partitions_for_topic(t) for t in topics):
            await producer.client.force_metadata_update()


def _settle(future: asyncio.Future[Any] | None) -> None:
    """Cancel a request nobody awaited, or mark its failure seen (asyncio logs unseen ones)."""
    if future is None:
        return
    if not future.done():
        future.cancel()
    elif not future.cancelled():
        future.exception()


async def replay(db: Database, table: Table, since: datetime, until: datetime | None = None) -> int:
    """Mark a time range of the outbox unpublished so the relay sends it again (consumers dedupe)."""
    stmt = update(table).where(table.c.created_at >= since, table.c.published_at.is_not(None))
    if until is not None:
        stmt = stmt.where(table.c.created_at < until)
    async with db.transaction() as session:
        result = await session.execute(stmt.values(published_at=None))
        await session.execute(select(func.pg_notify(notify_channel(table.schema or ""), "")))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def _quietly(awaitable: Any) -> None:
    try:
        await awaitable
    except Exception as exc:  # shutting a broken client down must not mask the original error
        log.debug("close_failed", error=str(exc))
