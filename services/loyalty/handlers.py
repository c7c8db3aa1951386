"""Event handlers of the loyalty service: orders move points, tiers and coupons; profiles earn bonuses;
history imports are absorbed set-based; merges fold members."""

from __future__ import annotations

import time

import structlog
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.contracts.behaviour import BehaviourKind, BehaviourPayload
from laoke.contracts.customers import CUSTOMER_MERGED, CustomerMergedPayload
from laoke.contracts.envelope import EventEnvelope
from laoke.contracts.imports import IMPORT_COMPLETED, ImportCompletedPayload
from laoke.contracts.orders import ORDER_EVENT_TYPES, OrderEventPayload
from laoke.contracts.segmentation import PROFILE_UPDATED, ProfileUpdatedPayload
from laoke.contracts.topics import Topic
from laoke.kit.bulk import copy_feed_into
from laoke.kit.consumer import Batched, EventHandler
from laoke.kit.merges import Merges
from laoke.kit.outbox import Outbox
from laoke.kit.service import ConsumerFactory, consumer_group
from services.loyalty import activity_tasks, history, ledger, program
from services.loyalty.ledger import Ledger
from services.loyalty.models import Participation, merged_customers, plumbing
from services.loyalty.orders import apply_orders
from services.loyalty.settings import LoyaltySettings

log = structlog.get_logger(__name__)

MERGES = Merges(merged_customers)


def event_handlers(outbox: Outbox, service: LoyaltySettings) -> dict[str, EventHandler | Batched]:
    async def on_orders_changed(session: AsyncSession, events: list[EventEnvelope]) -> None:
        """A run of order events of one partition, in order, in one transaction (one claim, one commit,
        one merge lookup per shop); the run's members are locked together, in customer order."""
        by_shop: dict[str, list[OrderEventPayload]] = {}
        for event in events:
            by_shop.setdefault(event.shop_id, []).append(OrderEventPayload.model_validate(event.payload))
        for shop_id, orders in by_shop.items():
            merged = await MERGES.surviving_many(session, shop_id, {o.customer_id for o in orders})
            settings = await program.load(session, shop_id)
            # Events of customers merged away meanwhile count for the surviving customer.
            surviving = [
                o.model_copy(update={"customer_id": merged[o.customer_id]}) if o.customer_id in merged else o
                for o in orders
            ]
            await apply_orders(session, outbox, shop_id, surviving, settings)
            await activity_tasks.orders_changed(session, outbox, service, settings, shop_id, surviving)

    async def on_order_changed(session: AsyncSession, event: EventEnvelope) -> None:
        await on_orders_changed(session, [event])

    async def on_profile_updated(session: AsyncSession, event: EventEnvelope) -> None:
        """The shop recorded a birthday or completed a profile: remember the birthday (for the birthday
        bonus) and pay the profile bonus once."""
        profile = ProfileUpdatedPayload.model_validate(event.payload)
        customer_id = await MERGES.surviving(session, event.shop_id, profile.customer_id)
        settings = await program.load(session, event.shop_id)
        book = Ledger(session, outbox, event.shop_id, settings)
        member = await book.member(customer_id)
        assert member is not None
        if "birthday" in profile.changed:
            member.birthday = profile.birthday
        if profile.profile_complete and settings.profile_bonus:
            await book.credit(member, "bonus", settings.profile_bonus, "profile_complete:" + customer_id)
        tasks = ["profile_completion"] if profile.profile_complete else []
        if "birthday" in profile.changed and profile.birthday is not None:
            tasks.append("birthday_registration")
        for task in tasks:
            await activity_tasks.happened(
                session, outbox, service, settings, event.shop_id, customer_id, task, event.occurred_at
            )

    async def on_behaviour(session: AsyncSession, event: EventEnvelope) -> None:
        """A favourite or a cart completes the matching tasks (browsing pays nothing)."""
        behaviour = BehaviourPayload.model_validate(event.payload)
        if behaviour.kind == BehaviourKind.BROWSE:
            return
        customer_id = await MERGES.surviving(session, event.shop_id, behaviour.customer_id)
        settings = await program.load(session, event.shop_id)
        await activity_tasks.happened(
            session,
            outbox,
            service,
            settings,
            event.shop_id,
            customer_id,
            behaviour.kind.value,
            behaviour.occurred_at,
            item_id=behaviour.item_id,
        )

    async def on_customer_merged(session: AsyncSession, event: EventEnvelope) -> None:
        merged = CustomerMergedPayload.model_validate(event.payload)
        await MERGES.record(session, event.shop_id, merged.from_customer_id, merged.into_customer_id)
        await ledger.fold(session, event.shop_id, merged.from_customer_id, merged.into_customer_id)
        await session.execute(
            update(Participation)
            .where(
                Participation.shop_id == event.shop_id, Participation.customer_id == merged.from_customer_id
            )
            .values(customer_id=merged.into_customer_id)
        )

    return {
        **dict.fromkeys(
            set(ORDER_EVENT_TYPES.values()), Batched(many=on_orders_changed, one=on_order_changed)
        ),
        PROFILE_UPDATED: on_profile_updated,
        **{f"behaviour.{kind.value}": on_behaviour for kind in BehaviourKind},
        CUSTOMER_MERGED: on_customer_merged,
    }


def import_handler(settings: LoyaltySettings) -> EventHandler:
    async def on_import_completed(session: AsyncSession, event: EventEnvelope) -> None:
        """A history import: its orders pulled from ingest in one stream and absorbed set-based."""
        done = ImportCompletedPayload.model_validate(event.payload)
        started = time.perf_counter()
        rows = await copy_feed_into(
            session,
            settings,
            base_url=settings.ingest_url,
            path=done.orders_path,
            shop_id=event.shop_id,
            table="imported_orders",
            columns=history.FEED_COLUMNS,
        )
        fetched = time.perf_counter()
        current = await program.load(session, event.shop_id)
        await history.absorb(
            session, event.shop_id, "imported_orders", done.import_id, current, done.award_points
        )
        log.info(
            "import_absorbed",
            import_id=done.import_id,
            orders=rows,
            award_points=done.award_points,
            fetch_seconds=round(fetched - started, 2),
            absorb_seconds=round(time.perf_counter() - fetched, 2),
        )

    return on_import_completed


def consumers(settings: LoyaltySettings) -> ConsumerFactory:
    def handlers(outbox: Outbox) -> dict[str, EventHandler | Batched]:
        return {**event_handlers(outbox, settings), IMPORT_COMPLETED: import_handler(settings)}

    topics = (Topic.ORDERS, Topic.CUSTOMERS, Topic.SEGMENTATION, Topic.BEHAVIOUR)
    return consumer_group(settings, plumbing.processed_events, topics, handlers)
