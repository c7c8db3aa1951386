"""Event handlers of the segmentation service: order events and history imports keep profiles current."""

from __future__ import annotations

import time

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.contracts.customers import CUSTOMER_MERGED, CustomerMergedPayload
from laoke.contracts.envelope import EventEnvelope
from laoke.contracts.imports import IMPORT_COMPLETED, IMPORT_FEED_COLUMNS, ImportCompletedPayload
from laoke.contracts.orders import ORDER_EVENT_TYPES, OrderEventPayload
from laoke.contracts.topics import Topic
from laoke.kit import clock
from laoke.kit.bulk import copy_feed_into
from laoke.kit.consumer import EventHandler
from laoke.kit.merges import Merges
from laoke.kit.outbox import Outbox
from laoke.kit.service import ConsumerFactory, consumer_group
from services.segmentation import rfm
from services.segmentation.models import merged_customers, plumbing
from services.segmentation.repository import ProfileRepository
from services.segmentation.settings import SegmentationSettings

log = structlog.get_logger(__name__)
MERGES = Merges(merged_customers)


async def on_order_changed(session: AsyncSession, event: EventEnvelope) -> None:
    order = OrderEventPayload.model_validate(event.payload)
    customer_id = await MERGES.surviving(session, event.shop_id, order.customer_id)
    if customer_id != order.customer_id:  # an event of a customer merged away meanwhile
        order = order.model_copy(update={"customer_id": customer_id})
    profiles = ProfileRepository(session)
    await profiles.record_order(event.shop_id, order)
    await profiles.recompute(event.shop_id, order.customer_id)
    settings = await rfm.load(session, event.shop_id)
    await rfm.rescore(session, event.shop_id, settings, clock.now(), [order.customer_id])


def import_handler(settings: SegmentationSettings) -> EventHandler:
    async def on_import_completed(session: AsyncSession, event: EventEnvelope) -> None:
        """A history import landed: pull its orders from ingest in one stream and recompute the
        profiles of every buyer in it, set-based (no per-order events were sent)."""
        done = ImportCompletedPayload.model_validate(event.payload)
        started = time.perf_counter()
        rows = await copy_feed_into(
            session,
            settings,
            base_url=settings.ingest_url,
            path=done.orders_path,
            shop_id=event.shop_id,
            table="imported_orders",
            columns=IMPORT_FEED_COLUMNS,
        )
        fetched = time.perf_counter()
        await ProfileRepository(session).absorb_import(event.shop_id, "imported_orders")
        absorbed = time.perf_counter()
        await rfm.rescore(session, event.shop_id, await rfm.load(session, event.shop_id), clock.now())
        log.info(
            "import_absorbed",
            import_id=done.import_id,
            orders=rows,
            fetch_seconds=round(fetched - started, 2),
            profiles_seconds=round(absorbed - fetched, 2),
            rescore_seconds=round(time.perf_counter() - absorbed, 2),
        )

    return on_import_completed


async def on_customer_merged(session: AsyncSession, event: EventEnvelope) -> None:
    merged = CustomerMergedPayload.model_validate(event.payload)
    await MERGES.record(session, event.shop_id, merged.from_customer_id, merged.into_customer_id)
    await ProfileRepository(session).fold(event.shop_id, merged.from_customer_id, merged.into_customer_id)
    settings = await rfm.load(session, event.shop_id)
    await rfm.rescore(session, event.shop_id, settings, clock.now(), [merged.into_customer_id])


def consumers(settings: SegmentationSettings) -> ConsumerFactory:
    def handlers(_outbox: Outbox) -> dict[str, EventHandler]:
        return {
            **dict.fromkeys(set(ORDER_EVENT_TYPES.values()), on_order_changed),
            IMPORT_COMPLETED: import_handler(settings),
            CUSTOMER_MERGED: on_customer_merged,
        }

    topics = (Topic.ORDERS, Topic.CUSTOMERS)
    return consumer_group(settings, plumbing.processed_events, topics, handlers)
