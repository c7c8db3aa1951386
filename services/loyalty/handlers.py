"""Event handlers of the loyalty service: consumed event -> ledger change -> event out via outbox."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from laoke.contracts.customers import CUSTOMER_MERGED, CustomerMergedPayload
from laoke.contracts.envelope import EventEnvelope, event_key
from laoke.contracts.imports import IMPORT_COMPLETED, IMPORT_FEED_COLUMNS, ImportCompletedPayload
from laoke.contracts.loyalty import POINTS_CHANGED, PointsChangedPayload
from laoke.contracts.orders import OrderEventPayload
from laoke.contracts.topics import Topic
from laoke.kit.bulk import copy_feed_into
from laoke.kit.consumer import EventHandler
from laoke.kit.merges import Merges
from laoke.kit.outbox import Outbox
from laoke.kit.service import ConsumerFactory, consumer_group
from services.loyalty.ledger import points_for_order
from services.loyalty.models import merged_customers, plumbing
from services.loyalty.repository import MemberRepository
from services.loyalty.settings import LoyaltySettings

MERGES = Merges(merged_customers)


def order_handlers(outbox: Outbox) -> dict[str, EventHandler]:
    async def on_order_completed(session: AsyncSession, event: EventEnvelope) -> None:
        order = OrderEventPayload.model_validate(event.payload)
        customer_id = await MERGES.surviving(session, event.shop_id, order.customer_id)
        if customer_id != order.customer_id:  # an event of a customer merged away meanwhile
            order = order.model_copy(update={"customer_id": customer_id})
        points = points_for_order(order)
        if points <= 0:
            return
        reference = f"order:{order.order_id}"
        balance = await MemberRepository(session).append_entry(
            event.shop_id, order.customer_id, "earn", points, reference
        )
        if balance is None:
            return  # this order was already credited
        await outbox.add(
            session,
            topic=Topic.LOYALTY,
            event_type=POINTS_CHANGED,
            shop_id=event.shop_id,
            key=event_key(event.shop_id, order.customer_id),
            payload=PointsChangedPayload(
                customer_id=order.customer_id,
                delta=points,
                kind="earn",
                reference=reference,
                balance=balance,
            ),
        )

    return {"order.completed": on_order_completed}


def import_handler(settings: LoyaltySettings) -> EventHandler:
    async def on_import_completed(session: AsyncSession, event: EventEnvelope) -> None:
        """Points for a history import's completed orders, only when the owner asked for them
        (`award_points`): pulled in one stream from ingest and booked set-based, idempotent per order
        through the ledger's unique reference, exactly like live earning."""
        done = ImportCompletedPayload.model_validate(event.payload)
        if not done.award_points:
            return
        await copy_feed_into(
            session,
            settings,
            base_url=settings.ingest_url,
            path=done.orders_path,
            shop_id=event.shop_id,
            table="imported_orders",
            columns=IMPORT_FEED_COLUMNS,
        )
        await MemberRepository(session).award_imported(event.shop_id, "imported_orders")

    return on_import_completed


async def on_customer_merged(session: AsyncSession, event: EventEnvelope) -> None:
    merged = CustomerMergedPayload.model_validate(event.payload)
    await MERGES.record(session, event.shop_id, merged.from_customer_id, merged.into_customer_id)
    await MemberRepository(session).fold(event.shop_id, merged.from_customer_id, merged.into_customer_id)


def consumers(settings: LoyaltySettings) -> ConsumerFactory:
    def handlers(outbox: Outbox) -> dict[str, EventHandler]:
        return {
            **order_handlers(outbox),
            IMPORT_COMPLETED: import_handler(settings),
            CUSTOMER_MERGED: on_customer_merged,
        }

    topics = (Topic.ORDERS, Topic.CUSTOMERS)
    return consumer_group(settings, plumbing.processed_events, topics, handlers)
