"""Event handlers of the messaging service: orders, loyalty and lifecycle events keep the local
projections (contacts, orders) current and trigger automations; merges fold a buyer's consent and
contact into the surviving id."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.contracts.customers import CUSTOMER_MERGED, CustomerMergedPayload
from laoke.contracts.envelope import EventEnvelope
from laoke.contracts.loyalty import (
    POINTS_CHANGED,
    POINTS_EXPIRING,
    TIER_CHANGED,
    TIERS_RENAMED,
    PointsChangedPayload,
    PointsExpiringPayload,
    TierChangedPayload,
    TiersRenamedPayload,
)
from laoke.contracts.orders import ORDER_EVENT_TYPES, OrderEventPayload, OrderStatus
from laoke.contracts.segmentation import (
    LIFECYCLE_CHANGED,
    PROFILE_UPDATED,
    LifecycleChangedPayload,
    ProfileUpdatedPayload,
)
from laoke.contracts.topics import Topic
from laoke.kit.consumer import Batched, EventHandler
from laoke.kit.merges import Merges
from laoke.kit.money import from_fen
from laoke.kit.outbox import Outbox
from laoke.kit.service import ConsumerFactory, consumer_group
from laoke.kit.tier_names import TierNames
from services.messaging import automations, webhooks
from services.messaging.automations import Kind
from services.messaging.dispatcher import Sender
from services.messaging.models import Campaign, Shop, merged_customers, plumbing, tier_names
from services.messaging.settings import MessagingSettings

MERGES = Merges(merged_customers)
TIER_NAMES = TierNames(tier_names)
SHOP_CREATED = "shop.created"


# Built once: a multi-row `insert().values(rows)` is compiled again for every run of events (its shape
# changes with the row count), which cost messaging about a fifth of its CPU under order load.
_CONTACT_FIELDS = ("name", "mobile", "email", "tier", "points", "birthday")
_UPSERT_CONTACTS = text(
    "INSERT INTO messaging.contacts AS c (shop_id, customer_id, name, mobile, email, tier, points, birthday) "
    "SELECT :shop, v.* FROM unnest(CAST(:customer_id AS text[]), CAST(:name AS text[]), "
    "CAST(:mobile AS text[]), CAST(:email AS text[]), CAST(:tier AS text[]), CAST(:points AS bigint[]), "
    "CAST(:birthday AS date[])) AS v(customer_id, name, mobile, email, tier, points, birthday) "
    "ON CONFLICT (shop_id, customer_id) DO UPDATE SET name = coalesce(excluded.name, c.name), "
    "mobile = coalesce(excluded.mobile, c.mobile), email = coalesce(excluded.email, c.email), "
    "tier = coalesce(excluded.tier, c.tier), points = coalesce(excluded.points, c.points), "
    "birthday = coalesce(excluded.birthday, c.birthday), updated_at = now()"
)
_UPSERT_ORDERS = text(
    "INSERT INTO messaging.orders AS o (shop_id, order_id, customer_id, external_order_id, status, "
    "total_fen, paid_fen, refunded_fen, placed_at, paid_at, shipped_at, source_modified_at) "
    "SELECT :shop, v.* FROM unnest(CAST(:order_id AS text[]), CAST(:customer_id AS text[]), "
    "CAST(:external_order_id AS text[]), CAST(:status AS text[]), CAST(:total_fen AS bigint[]), "
    "CAST(:paid_fen AS bigint[]), CAST(:refunded_fen AS bigint[]), CAST(:placed_at AS timestamptz[]), "
    "CAST(:paid_at AS timestamptz[]), CAST(:shipped_at AS timestamptz[]), "
    "CAST(:source_modified_at AS timestamptz[])) AS v(order_id, customer_id, external_order_id, status, "
    "total_fen, paid_fen, refunded_fen, placed_at, paid_at, shipped_at, source_modified_at) "
    "ON CONFLICT (shop_id, order_id) DO UPDATE SET customer_id = excluded.customer_id, "
    "external_order_id = excluded.external_order_id, status = excluded.status, "
    "total_fen = excluded.total_fen, paid_fen = excluded.paid_fen, refunded_fen = excluded.refunded_fen, "
    "placed_at = excluded.placed_at, paid_at = excluded.paid_at, shipped_at = excluded.shipped_at, "
    "source_modified_at = excluded.source_modified_at "
    # A stale event (older than what is stored) changes nothing.
    "WHERE o.source_modified_at <= excluded.source_modified_at "
    "RETURNING o.order_id"
)

# Which buyers of a run ordered before (no welcome for them). The buyers come as rows beside the shop,
# not as a condition on the orders: for a shop the statistics do not know yet, PostgreSQL takes
# `shop_id = :shop` for a row or two and walked every order of the shop through the primary key.
BUYERS_WITH_ORDERS = text(
    "SELECT DISTINCT b.customer_id "
    "FROM (SELECT CAST(:shop AS varchar) AS shop_id, unnest(CAST(:ids AS varchar[])) AS customer_id) AS b "
    "JOIN messaging.orders o ON o.shop_id = b.shop_id AND o.customer_id = b.customer_id"
)


_RENAME_TIERS = text(
    """
    UPDATE messaging.contacts c SET tier = r.name, updated_at = now()
    FROM unnest(CAST(:previous AS text[]), CAST(:names AS text[])) AS r(previous, name)
    WHERE c.shop_id = :shop AND c.tier = r.previous
    """
)


async def _touch_contact(session: AsyncSession, shop_id: str, customer_id: str, **values: Any) -> None:
    await _touch_contacts(session, shop_id, {customer_id: values})


async def _touch_contacts(session: AsyncSession, shop_id: str, contacts: dict[str, dict[str, Any]]) -> None:
    """Create contacts or fill what the events know; a value an event lacks keeps the stored one."""
    if not contacts:
        return
    ordered = sorted(contacts)  # one lock order for every transaction that touches these rows
    params: dict[str, Any] = {"shop": shop_id, "customer_id": ordered}
    for field in _CONTACT_FIELDS:
        params[field] = [contacts[c].get(field) for c in ordered]
    await session.execute(_UPSERT_CONTACTS, params)


async def absorb_orders(
    session: AsyncSession, sender: Sender, shop_id: str, orders: list[tuple[OrderEventPayload, str]]
) -> None:
    """A run of order events of one shop (with the surviving customer of each), set-based: contacts and
    orders upserted in one statement each, then 催付, shipment notices and welcomes queued in one."""
    latest: dict[str, tuple[OrderEventPayload, str]] = {}
    # What each order went through in the run, not only where it ended: a first order paid and shipped
    # within one run still welcomes its buyer and still tells them it shipped, as event by event.
    passed: dict[str, set[OrderStatus]] = {}
    contacts: dict[str, dict[str, Any]] = {}
    for order, customer_id in orders:
        kept = latest.get(order.order_id)
        if kept is None or kept[0].source_modified_at <= order.source_modified_at:
            latest[order.order_id] = (order, customer_id)
        passed.setdefault(order.order_id, set()).add(order.status)
        buyer = order.buyer
        if buyer is not None:
            known = contacts.setdefault(customer_id, {})
            for field, value in (
                ("name", buyer.receiver_name or buyer.nick),
                ("mobile", buyer.mobile),
                ("email", buyer.email),
            ):
                if value is not None:
                    known[field] = value
    welcome = await automations.setting(session, shop_id, Kind.WELCOME)
    returning: set[str] = set()
    if welcome is not None:  # buyers with an order before this run get no welcome
        buyers = sorted({c for _, c in latest.values()})
        returning = set(await session.scalars(BUYERS_WITH_ORDERS, {"shop": shop_id, "ids": buyers}))
    await _touch_contacts(session, shop_id, {c: v for c, v in contacts.items() if v})
    kept = sorted(latest.values(), key=lambda pair: pair[0].order_id)
    params: dict[str, Any] = {
        "shop": shop_id,
        "order_id": [o.order_id for o, _ in kept],
        "customer_id": [c for _, c in kept],
        "external_order_id": [o.external_order_id for o, _ in kept],
        "status": [o.status.value for o, _ in kept],
        "total_fen": [o.total_fen for o, _ in kept],
        "paid_fen": [o.paid_fen for o, _ in kept],
        "refunded_fen": [o.refunded_fen for o, _ in kept],
        "placed_at": [o.placed_at for o, _ in kept],
        "paid_at": [o.paid_at for o, _ in kept],
        "shipped_at": [o.shipped_at for o, _ in kept],
        "source_modified_at": [o.source_modified_at for o, _ in kept],
    }
    changed = set((await session.execute(_UPSERT_ORDERS, params)).scalars())
    reminder = await automations.setting(session, shop_id, Kind.UNPAID_REMINDER)
    notice = await automations.setting(session, shop_id, Kind.SHIPMENT_NOTICE)
    due: list[automations.Occurrence] = []
    no_longer_unpaid: dict[str, str] = {}
    welcomed: set[str] = set()
    for order, customer_id in latest.values():
        if order.order_id not in changed:
            continue
        details = {"order_id": order.external_order_id, "order_amount": f"{from_fen(order.total_fen):.2f}"}
        if order.status == OrderStatus.CREATED:
            if reminder is not None:
                wait = timedelta(minutes=reminder.delay_minutes)
                due.append(
                    automations.Occurrence(
                        reminder, customer_id, order.order_id, order.placed_at + wait, order.order_id, details
                    )
                )
        else:
            no_longer_unpaid[order.order_id] = f"order is {order.status.value} now"
        if OrderStatus.SHIPPED in passed[order.order_id] and notice is not None:
            due.append(
                automations.Occurrence(notice, customer_id, order.order_id, None, order.order_id, details)
            )
        if (
            welcome is not None
            and passed[order.order_id] & {OrderStatus.CREATED, OrderStatus.PAID}
            and customer_id not in returning | welcomed
        ):
            welcomed.add(customer_id)
            due.append(automations.Occurrence(welcome, customer_id, customer_id, None, None, details))
    if reminder is not None:
        # With 催付 off nothing is queued; one queued before it was turned off is still cancelled at
        # its send time (the dispatcher checks the order again), so a shop without it pays no lookup.
        await automations.cancel_reminders(session, shop_id, no_longer_unpaid)
    await automations.queue_many(session, sender, due)


def event_handlers(outbox: Outbox, sender: Sender) -> dict[str, EventHandler | Batched]:
    async def on_orders(session: AsyncSession, events: list[EventEnvelope]) -> None:
        """A run of order events: one merge lookup per shop, then set-based per shop."""
        by_shop: dict[str, list[OrderEventPayload]] = {}
        for event in events:
            by_shop.setdefault(event.shop_id, []).append(OrderEventPayload.model_validate(event.payload))
        for shop_id, orders in by_shop.items():
            merged = await MERGES.surviving_many(session, shop_id, {o.customer_id for o in orders})
            await absorb_orders(
                session, sender, shop_id, [(o, merged.get(o.customer_id, o.customer_id)) for o in orders]
            )

    async def on_one_order(session: AsyncSession, event: EventEnvelope) -> None:
        await on_orders(session, [event])

    async def on_lifecycle(session: AsyncSession, event: EventEnvelope) -> None:
        change = LifecycleChangedPayload.model_validate(event.payload)
        if change.to_lifecycle != "sleeping":
            return
        winback = await automations.setting(session, event.shop_id, Kind.WINBACK)
        if winback is not None:
            customer_id = await MERGES.surviving(session, event.shop_id, change.customer_id)
            day = event.occurred_at.strftime("%Y%m%d")
            await automations.queue(session, sender, winback, customer_id, f"{customer_id}:{day}")

    async def on_tier(session: AsyncSession, event: EventEnvelope) -> None:
        change = TierChangedPayload.model_validate(event.payload)
        customer_id = await MERGES.surviving(session, event.shop_id, change.customer_id)
        name = await TIER_NAMES.current(
            session, event.shop_id, change.to_level, change.tier_name, event.occurred_at
        )
        await _touch_contact(session, event.shop_id, customer_id, tier=name)
        if change.from_level is not None and change.to_level > change.from_level:
            upgrade = await automations.setting(session, event.shop_id, Kind.TIER_UPGRADE)
            if upgrade is not None:
                day = event.occurred_at.strftime("%Y%m%d")
                await automations.queue(
                    session, sender, upgrade, customer_id, f"{customer_id}:{change.to_level}:{day}"
                )

    async def on_tiers_renamed(session: AsyncSession, event: EventEnvelope) -> None:
        """Contacts in a renamed tier greet and pick campaign variants by its new name. One statement
        from old to new names, so two tiers that swap names do not end up with one."""
        renamed = TiersRenamedPayload.model_validate(event.payload)
        await TIER_NAMES.record(session, event.shop_id, renamed.tiers, event.occurred_at)
        await session.execute(
            _RENAME_TIERS,
            {
                "shop": event.shop_id,
                "previous": [t.previous_name for t in renamed.tiers],
                "names": [t.name for t in renamed.tiers],
            },
        )
        # Campaigns not yet snapshotted pick their text by tier name then: their variants follow.
        names = {t.previous_name: t.name for t in renamed.tiers}
        waiting = await session.scalars(
            select(Campaign)
            .where(
                Campaign.shop_id == event.shop_id,
                Campaign.snapshot_at.is_(None),
                Campaign.variants_by_tier.is_not(None),
            )
            .with_for_update()
        )
        for campaign in waiting:
            before = campaign.variants_by_tier or {}
            variants = {names.get(tier, tier): template for tier, template in before.items()}
            if variants != before:
                campaign.variants_by_tier = variants

    async def on_points(session: AsyncSession, events: list[EventEnvelope]) -> None:
        """A run of points changes: each buyer's contact keeps the balance of their last change in the
        run, written in one statement per shop instead of a transaction per change (every redemption
        and every credited order makes one)."""
        by_shop: dict[str, list[PointsChangedPayload]] = {}
        for event in events:
            by_shop.setdefault(event.shop_id, []).append(PointsChangedPayload.model_validate(event.payload))
        for shop_id, changes in by_shop.items():
            merged = await MERGES.surviving_many(session, shop_id, {c.customer_id for c in changes})
            balances: dict[str, dict[str, Any]] = {}
            for change in changes:  # in run order: the last change of a buyer wins
                balances[merged.get(change.customer_id, change.customer_id)] = {"points": change.balance}
            await _touch_contacts(session, shop_id, balances)

    async def on_one_points(session: AsyncSession, event: EventEnvelope) -> None:
        await on_points(session, [event])

    async def on_points_expiring(session: AsyncSession, event: EventEnvelope) -> None:
        notice = PointsExpiringPayload.model_validate(event.payload)
        reminder = await automations.setting(session, event.shop_id, Kind.POINTS_EXPIRING)
        if reminder is not None:
            customer_id = await MERGES.surviving(session, event.shop_id, notice.customer_id)
            day = notice.expires_at.date().isoformat()
            await automations.queue(
                session,
                sender,
                reminder,
                customer_id,
                f"{customer_id}:{day}",
                variables={"expiring_points": notice.points, "expires_at": day, "points": notice.balance},
            )

    async def on_profile(session: AsyncSession, event: EventEnvelope) -> None:
        profile = ProfileUpdatedPayload.model_validate(event.payload)
        if "birthday" in profile.changed:
            customer_id = await MERGES.surviving(session, event.shop_id, profile.customer_id)
            await _touch_contact(session, event.shop_id, customer_id, birthday=profile.birthday)

    async def on_merged(session: AsyncSession, event: EventEnvelope) -> None:
        merged = CustomerMergedPayload.model_validate(event.payload)
        shop, source, target = event.shop_id, merged.from_customer_id, merged.into_customer_id
        await MERGES.record(session, shop, source, target)
        params = {"shop": shop, "source": source, "target": target}
        # An opt-out on either id stays an opt-out; the contact fills gaps of the survivor.
        await session.execute(
            text(
                "INSERT INTO messaging.consents "
                "(shop_id, customer_id, channel, subscribed, source, updated_at) "
                "SELECT shop_id, :target, channel, subscribed, source, updated_at FROM messaging.consents "
                "WHERE shop_id = :shop AND customer_id = :source AND NOT subscribed "
                "ON CONFLICT (shop_id, customer_id, channel) DO UPDATE SET subscribed = false"
            ),
            params,
        )
        await session.execute(
            text(
                "UPDATE messaging.contacts t SET name = coalesce(t.name, s.name), "
                "mobile = coalesce(t.mobile, s.mobile), email = coalesce(t.email, s.email), "
                "birthday = coalesce(t.birthday, s.birthday) FROM messaging.contacts s "
                "WHERE t.shop_id = :shop AND t.customer_id = :target "
                "AND s.shop_id = :shop AND s.customer_id = :source"
            ),
            params,
        )
        await session.execute(
            text(
                "UPDATE messaging.orders SET customer_id = :target "
                "WHERE shop_id = :shop AND customer_id = :source"
            ),
            params,
        )

    async def on_shop_created(session: AsyncSession, event: EventEnvelope) -> None:
        await session.execute(
            insert(Shop)
            .values(
                shop_id=event.shop_id,
                name=str(event.payload.get("name", "")),
                timezone=str(event.payload.get("timezone", "Asia/Shanghai")),
            )
            .on_conflict_do_nothing()
        )

    return {
        **dict.fromkeys(set(ORDER_EVENT_TYPES.values()), Batched(many=on_orders, one=on_one_order)),
        LIFECYCLE_CHANGED: on_lifecycle,
        TIER_CHANGED: on_tier,
        TIERS_RENAMED: on_tiers_renamed,
        POINTS_CHANGED: Batched(many=on_points, one=on_one_points),
        POINTS_EXPIRING: on_points_expiring,
        PROFILE_UPDATED: on_profile,
        CUSTOMER_MERGED: on_merged,
        SHOP_CREATED: on_shop_created,
    }


def forwarding_to_subscribers(
    handlers: dict[str, EventHandler | Batched],
) -> dict[str, EventHandler | Batched]:
    """Every event an app may subscribe to also queues its outbound webhook deliveries, in the same
    transaction as the event's own handling (services/messaging/webhooks.py)."""

    def one(handler: EventHandler | None) -> EventHandler:
        async def handle(session: AsyncSession, event: EventEnvelope) -> None:
            if handler is not None:
                await handler(session, event)
            await webhooks.enqueue(session, event)

        return handle

    def many(handler: Batched) -> Batched:
        async def handle(session: AsyncSession, events: list[EventEnvelope]) -> None:
            await handler.many(session, events)
            for event in events:
                await webhooks.enqueue(session, event)

        return Batched(many=handle, one=one(handler.one))

    def run_of(handler: EventHandler | None) -> Batched:
        # Runs, not one transaction per event: a rescore can announce a million `customer.rfm_changed`.
        single = one(handler)

        async def handle(session: AsyncSession, events: list[EventEnvelope]) -> None:
            for event in events:
                await single(session, event)

        return Batched(many=handle, one=single)

    # One wrapper per handler, so event types that share a handler (every order event) still form
    # one run in the consumer.
    made: dict[int, Batched] = {}
    wrapped = dict(handlers)
    for event_type in webhooks.EVENT_TYPES:
        current = handlers.get(event_type)
        if current is None:
            wrapped[event_type] = run_of(None)
        elif id(current) not in made:
            made[id(current)] = many(current) if isinstance(current, Batched) else run_of(current)
            wrapped[event_type] = made[id(current)]
        else:
            wrapped[event_type] = made[id(current)]
    return wrapped


def consumers(settings: MessagingSettings) -> ConsumerFactory:
    topics = (Topic.ORDERS, Topic.CUSTOMERS, Topic.LOYALTY, Topic.SEGMENTATION, Topic.SHOPS)
    sender = Sender(settings)  # sends the in-app messages automations queue, as they queue them

    def handlers(outbox: Outbox) -> dict[str, EventHandler | Batched]:
        return forwarding_to_subscribers(event_handlers(outbox, sender))

    return consumer_group(settings, plumbing.processed_events, topics, handlers)
