"""Event handlers of the segmentation service: orders, behaviour, loyalty and consent events and history
imports keep profiles, scores and segment memberships current."""

from __future__ import annotations

import time

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.contracts.behaviour import BehaviourKind, BehaviourPayload
from laoke.contracts.customers import CUSTOMER_MERGED, CustomerMergedPayload
from laoke.contracts.envelope import EventEnvelope
from laoke.contracts.imports import IMPORT_COMPLETED, ImportCompletedPayload
from laoke.contracts.loyalty import (
    CUSTOMER_ATTRIBUTES_UPDATED,
    POINTS_CHANGED,
    POINTS_EXPIRED,
    TIER_CHANGED,
    TIERS_RENAMED,
    AttributesUpdatedPayload,
    PointsChangedPayload,
    PointsExpiredPayload,
    TierChangedPayload,
    TiersRenamedPayload,
)
from laoke.contracts.messaging import CONSENT_CHANGED, ConsentChangedPayload
from laoke.contracts.orders import ORDER_EVENT_TYPES, OrderEventPayload
from laoke.contracts.topics import Topic
from laoke.kit import clock
from laoke.kit.bulk import copy_feed_into
from laoke.kit.consumer import Batched, EventHandler
from laoke.kit.merges import Merges
from laoke.kit.outbox import Outbox
from laoke.kit.service import ConsumerFactory, consumer_group
from laoke.kit.tier_names import TierNames
from services.segmentation import rfm, rfm_config, segments
from services.segmentation.models import merged_customers, plumbing, tier_names
from services.segmentation.repository import IMPORT_COLUMNS, ProfileRepository
from services.segmentation.settings import SegmentationSettings

log = structlog.get_logger(__name__)
MERGES = Merges(merged_customers)
TIER_NAMES = TierNames(tier_names)


async def _surviving(session: AsyncSession, shop_id: str, customer_id: str) -> str:
    """Events of a customer merged away meanwhile belong to the surviving customer."""
    return await MERGES.surviving(session, shop_id, customer_id)


async def _rescore_customers(
    session: AsyncSession, outbox: Outbox, shop_id: str, customer_ids: list[str]
) -> None:
    """After anything changed some profiles: their RFM and lifecycle, then their segment memberships."""
    now = clock.now()
    await rfm.rescore(session, shop_id, await rfm_config.load(session, shop_id), now, customer_ids)
    await segments.refresh_customers(session, outbox, shop_id, customer_ids, now)


async def _rescore_customer(session: AsyncSession, outbox: Outbox, shop_id: str, customer_id: str) -> None:
    await _rescore_customers(session, outbox, shop_id, [customer_id])


def profile_handlers(outbox: Outbox) -> dict[str, EventHandler | Batched]:
    async def on_orders_changed(session: AsyncSession, events: list[EventEnvelope]) -> None:
        """A run of order events (one partition, in order), set-based per shop: a few statements for
        the whole run instead of a transaction per event."""
        by_shop: dict[str, list[OrderEventPayload]] = {}
        for event in events:
            by_shop.setdefault(event.shop_id, []).append(OrderEventPayload.model_validate(event.payload))
        for shop_id, orders in by_shop.items():
            merged = await MERGES.surviving_many(session, shop_id, {o.customer_id for o in orders})
            if merged:  # events of customers merged away meanwhile
                orders = [
                    o.model_copy(update={"customer_id": merged.get(o.customer_id, o.customer_id)})
                    for o in orders
                ]
            customers = sorted({o.customer_id for o in orders})
            profiles = ProfileRepository(session)
            await profiles.touch(shop_id, [(o.customer_id, o.channel, o.buyer) for o in orders])
            await profiles.record_orders(shop_id, orders)
            await profiles.recompute(shop_id, customers)
            await _rescore_customers(session, outbox, shop_id, customers)

    async def on_order_changed(session: AsyncSession, event: EventEnvelope) -> None:
        await on_orders_changed(session, [event])

    async def on_behaviour(session: AsyncSession, event: EventEnvelope) -> None:
        """Favourites, carts and browsing; a buyer with behaviour but no order is a prospect."""
        behaviour = BehaviourPayload.model_validate(event.payload)
        customer_id = await _surviving(session, event.shop_id, behaviour.customer_id)
        behaviour = behaviour.model_copy(update={"customer_id": customer_id})
        profiles = ProfileRepository(session)
        await profiles.touch(event.shop_id, [(customer_id, behaviour.channel, behaviour.buyer)])
        await profiles.record_behaviour(event.shop_id, behaviour)
        await _rescore_customer(session, outbox, event.shop_id, customer_id)

    async def on_points_changed_many(session: AsyncSession, events: list[EventEnvelope]) -> None:
        """A run of balance changes: per shop, the last balance of each member wins (events of one
        member are in order), written in one statement."""
        by_shop: dict[str, dict[str, int]] = {}
        for event in events:
            points = PointsChangedPayload.model_validate(event.payload)
            by_shop.setdefault(event.shop_id, {})[points.customer_id] = points.balance
        for shop_id, balances in by_shop.items():
            merged = await MERGES.surviving_many(session, shop_id, set(balances))
            surviving = {merged.get(c, c): b for c, b in balances.items()}
            await ProfileRepository(session).set_points(shop_id, surviving)
            await segments.refresh_customers(session, outbox, shop_id, sorted(surviving), clock.now())

    async def on_points_changed(session: AsyncSession, event: EventEnvelope) -> None:
        await on_points_changed_many(session, [event])

    async def on_tier_changed(session: AsyncSession, event: EventEnvelope) -> None:
        tier = TierChangedPayload.model_validate(event.payload)
        customer_id = await _surviving(session, event.shop_id, tier.customer_id)
        name = await TIER_NAMES.current(
            session, event.shop_id, tier.to_level, tier.tier_name, event.occurred_at
        )
        await ProfileRepository(session).set_loyalty(
            event.shop_id, customer_id, tier_level=tier.to_level, tier=name
        )
        await segments.refresh_customers(session, outbox, event.shop_id, [customer_id], clock.now())

    async def on_tiers_renamed(session: AsyncSession, event: EventEnvelope) -> None:
        """Tiers renamed in the programme: their members' copies take the new names, then the shop's
        segments are refreshed (a rule on the tier name now matches them under it)."""
        renamed = TiersRenamedPayload.model_validate(event.payload)
        await TIER_NAMES.record(session, event.shop_id, renamed.tiers, event.occurred_at)
        profiles = ProfileRepository(session)
        changed = 0
        for tier in renamed.tiers:
            changed += await profiles.rename_tier(event.shop_id, tier.level, tier.name)
        if changed:
            await segments.refresh_shop(session, event.shop_id, clock.now())

    async def on_consent_changed(session: AsyncSession, event: EventEnvelope) -> None:
        consent = ConsentChangedPayload.model_validate(event.payload)
        customer_id = await _surviving(session, event.shop_id, consent.customer_id)
        await ProfileRepository(session).set_consent(
            event.shop_id, customer_id, consent.channel, consent.subscribed
        )

    async def on_attributes_updated(session: AsyncSession, event: EventEnvelope) -> None:
        """Survey answers: stored on the profile, then the segments whose rules may read them."""
        told = AttributesUpdatedPayload.model_validate(event.payload)
        customer_id = await _surviving(session, event.shop_id, told.customer_id)
        await ProfileRepository(session).set_attributes(event.shop_id, customer_id, told.attributes)
        await segments.refresh_customers(session, outbox, event.shop_id, [customer_id], clock.now())

    async def on_customer_merged(session: AsyncSession, event: EventEnvelope) -> None:
        merged = CustomerMergedPayload.model_validate(event.payload)
        await MERGES.record(session, event.shop_id, merged.from_customer_id, merged.into_customer_id)
        await ProfileRepository(session).fold(event.shop_id, merged.from_customer_id, merged.into_customer_id)
        await _rescore_customer(session, outbox, event.shop_id, merged.into_customer_id)

    return {
        **dict.fromkeys(
            set(ORDER_EVENT_TYPES.values()), Batched(many=on_orders_changed, one=on_order_changed)
        ),
        **{f"behaviour.{kind.value}": on_behaviour for kind in BehaviourKind},
        POINTS_CHANGED: Batched(many=on_points_changed_many, one=on_points_changed),
        TIER_CHANGED: on_tier_changed,
        TIERS_RENAMED: on_tiers_renamed,
        CONSENT_CHANGED: on_consent_changed,
        CUSTOMER_ATTRIBUTES_UPDATED: on_attributes_updated,
        CUSTOMER_MERGED: on_customer_merged,
    }


def import_handler(settings: SegmentationSettings) -> EventHandler:
    async def on_import_completed(session: AsyncSession, event: EventEnvelope) -> None:
        """A history import landed: pull its orders from ingest in one stream and recompute the
        profiles of every buyer in it, then scores and segments, set-based (no per-order events)."""
        done = ImportCompletedPayload.model_validate(event.payload)
        started = time.perf_counter()
        rows = await copy_feed_into(
            session,
            settings,
            base_url=settings.ingest_url,
            path=done.orders_path,
            shop_id=event.shop_id,
            table="imported_orders",
            columns=IMPORT_COLUMNS,
        )
        fetched = time.perf_counter()
        now = clock.now()
        scoring = await rfm_config.load(session, event.shop_id)
        await ProfileRepository(session).absorb_import(event.shop_id, "imported_orders", scoring, now)
        absorbed = time.perf_counter()
        # The profiles the import created are scored already; this scores the others (and announces
        # changed labels), or corrects any new one scored otherwise.
        await rfm.rescore(session, event.shop_id, scoring, now)
        rescored = time.perf_counter()
        entered, exited = await segments.refresh_shop(session, event.shop_id, now)
        log.info(
            "import_absorbed",
            import_id=done.import_id,
            orders=rows,
            fetch_seconds=round(fetched - started, 2),
            profiles_seconds=round(absorbed - fetched, 2),
            rescore_seconds=round(rescored - absorbed, 2),
            segments_seconds=round(time.perf_counter() - rescored, 2),
            segment_entered=entered,
            segment_exited=exited,
        )

    return on_import_completed


def expiry_handler(settings: SegmentationSettings) -> EventHandler:
    async def on_points_expired(session: AsyncSession, event: EventEnvelope) -> None:
        """A loyalty expiry run: the touched members' balances in one stream, then segments (rules over
        points_balance) set-based."""
        expired = PointsExpiredPayload.model_validate(event.payload)
        await copy_feed_into(
            session,
            settings,
            base_url=settings.loyalty_url,
            path=expired.balances_path,
            shop_id=event.shop_id,
            table="expired_balances",
            columns=(("customer_id", "text"), ("balance", "bigint")),
        )
        await ProfileRepository(session).set_points_from(event.shop_id, "expired_balances")
        await segments.refresh_shop(session, event.shop_id, clock.now())

    return on_points_expired


def consumers(settings: SegmentationSettings) -> ConsumerFactory:
    def handlers(outbox: Outbox) -> dict[str, EventHandler | Batched]:
        return {
            **profile_handlers(outbox),
            IMPORT_COMPLETED: import_handler(settings),
            POINTS_EXPIRED: expiry_handler(settings),
        }

    topics = (Topic.ORDERS, Topic.CUSTOMERS, Topic.BEHAVIOUR, Topic.LOYALTY, Topic.MESSAGING)
    return consumer_group(settings, plumbing.processed_events, topics, handlers)
