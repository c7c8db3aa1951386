"""Automations: messages events and dates trigger by themselves, each at most once per occurrence.

| kind | occurrence (the message's `source`) | trigger | marketing |
|---|---|---|---|
| `unpaid_reminder` 催付 | the order | `order.created`, sent `delay_minutes` later if still unpaid | no |
| `shipment_notice` 发货通知 | the order | `order.shipped` | no |
| `problem_shipment` 疑难件 | the order | shipped, not completed after `delay_minutes` (+ a ticket) | no |
| `birthday` 生日 | the customer and year | the shop-local birthday | yes |
| `winback` | the customer and day | `customer.lifecycle_changed` to `sleeping` | yes |
| `tier_upgrade` | the customer and tier | `loyalty.tier_changed` upwards | no |
| `points_expiring` | the customer and expiry date | `loyalty.points_expiring` | no |
| `welcome` | the customer | the first order | no |

Queueing inserts into `messages` with `ON CONFLICT DO NOTHING` on (shop, source, customer, channel):
a redelivered event, a second replica or a re-run job adds nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.kit import clock
from laoke.kit.cache import TtlCache
from laoke.kit.db import Database, as_arrays
from laoke.kit.ids import new_id
from laoke.kit.jsonutil import dumps_text
from services.messaging import policy
from services.messaging.channels import Channel, recipient_for
from services.messaging.models import Automation, Contact, Feedback
from services.messaging.queue import CLAIMED_COLUMNS, Claimed

if TYPE_CHECKING:
    from services.messaging.dispatcher import Sender

log = structlog.get_logger(__name__)


class Kind(StrEnum):
    UNPAID_REMINDER = "unpaid_reminder"
    SHIPMENT_NOTICE = "shipment_notice"
    PROBLEM_SHIPMENT = "problem_shipment"
    BIRTHDAY = "birthday"
    WINBACK = "winback"
    TIER_UPGRADE = "tier_upgrade"
    POINTS_EXPIRING = "points_expiring"
    WELCOME = "welcome"


MARKETING = frozenset({Kind.BIRTHDAY, Kind.WINBACK})
# Sensible waits when the shop gives none: 催付 after 30 minutes, 疑难件 after 5 days in transit.
DEFAULT_DELAY_MINUTES = {Kind.UNPAID_REMINDER: 30, Kind.PROBLEM_SHIPMENT: 5 * 24 * 60}
DESCRIPTIONS = {
    Kind.UNPAID_REMINDER: "催付: remind an unpaid order after the delay; cancelled on payment or close",
    Kind.SHIPMENT_NOTICE: "发货通知: tell the buyer the order has shipped",
    Kind.PROBLEM_SHIPMENT: "疑难件: shipped, not completed after the delay; a message and a follow-up ticket",
    Kind.BIRTHDAY: "生日营销: on the shop-local birthday, optionally with a coupon",
    Kind.WINBACK: "Win-back: when a buyer turns sleeping (沉睡), optionally with a coupon",
    Kind.TIER_UPGRADE: "Congratulate a member on reaching a higher tier",
    Kind.POINTS_EXPIRING: "Remind a member of points about to expire",
    Kind.WELCOME: "Welcome a buyer after the first order",
}


@dataclass(frozen=True)
class Setting:
    """An automation that is on, as the handlers need it (a plain value: it is cached across sessions)."""

    shop_id: str
    kind: str
    channel: str
    template_id: str
    delay_minutes: int
    coupon_template_id: str | None


# Read on every order event; a change made on another replica shows here within seconds.
_settings: TtlCache[dict[str, Setting]] = TtlCache(seconds=5)


# Of some orders (by id), those no longer waiting for payment: a 催付 for them is cancelled.
PAID_OR_CLOSED = text(
    "SELECT order_id, status FROM messaging.orders "
    "WHERE shop_id = :shop AND order_id = ANY(:ids) AND status <> 'created'"
)


async def setting(session: AsyncSession, shop_id: str, kind: Kind) -> Setting | None:
    """The shop's automation of `kind`, when it is on."""
    hit, cached = _settings.get(shop_id)
    if not hit or cached is None:
        rows = await session.scalars(
            select(Automation).where(Automation.shop_id == shop_id, Automation.enabled)
        )
        cached = _settings.put(
            shop_id,
            {
                r.kind: Setting(
                    r.shop_id, r.kind, r.channel, r.template_id, r.delay_minutes, r.coupon_template_id
                )
                for r in rows
            },
        )
    return cached.get(kind.value)


def forget(shop_id: str) -> None:
    _settings.forget(shop_id)


# Built once (a multi-row `insert().values(rows)` is compiled again for every run of events).
_QUEUE_COLUMNS = (
    "source",
    "customer_id",
    "channel",
    "marketing",
    "automation",
    "order_id",
    "template_id",
    "recipient",
    "variables",
    "coupon_template_id",
    "not_before",
)
# The interpolated SQL is a constant of this module.
_QUEUE_MESSAGES = text(
    "INSERT INTO messaging.messages (shop_id, source, customer_id, channel, marketing, automation, "  # noqa: S608
    "order_id, template_id, recipient, variables, coupon_template_id, not_before) "
    "SELECT :shop, v.source, v.customer_id, v.channel, v.marketing, v.automation, v.order_id, "
    "v.template_id, v.recipient, CAST(v.variables AS jsonb), v.coupon_template_id, v.not_before "
    "FROM unnest(CAST(:source AS text[]), CAST(:customer_id AS text[]), CAST(:channel AS text[]), "
    "CAST(:marketing AS boolean[]), CAST(:automation AS text[]), CAST(:order_id AS text[]), "
    "CAST(:template_id AS text[]), CAST(:recipient AS text[]), CAST(:variables AS text[]), "
    "CAST(:coupon_template_id AS text[]), CAST(:not_before AS timestamptz[])) "
    "AS v(source, customer_id, channel, marketing, automation, order_id, template_id, recipient, "
    "variables, coupon_template_id, not_before) "
    f"ON CONFLICT ON CONSTRAINT uq_messages_once DO NOTHING RETURNING not_before, {CLAIMED_COLUMNS}"
)


@dataclass(frozen=True)
class Occurrence:
    """One automation message to queue: whose, for which occurrence, when, with what order details."""

    automation: Setting | Automation
    customer_id: str
    occurrence: str
    not_before: datetime | None = None
    order_id: str | None = None
    variables: dict[str, Any] | None = None


async def queue_many(session: AsyncSession, sender: Sender, occurrences: Sequence[Occurrence]) -> set[str]:
    """Queue every occurrence's message in one statement, addressed from the contacts; returns the
    sources of those that were new (an occurrence queued before adds nothing). The new in-app messages
    that are due now (and wait for no coupon from loyalty) are sent right here by `sender`."""
    if not occurrences:
        return set()
    shop_id = occurrences[0].automation.shop_id
    customers = sorted({o.customer_id for o in occurrences})
    contacts = {
        c.customer_id: c
        for c in await session.scalars(
            select(Contact).where(Contact.shop_id == shop_id, Contact.customer_id.in_(customers))
        )
    }
    now = clock.now()
    rows: list[tuple[Any, ...]] = []
    for o in occurrences:
        contact, automation = contacts.get(o.customer_id), o.automation
        variables = {
            "name": contact.name if contact else None,
            "tier": contact.tier if contact else None,
            "points": contact.points if contact else None,
            **(o.variables or {}),
        }
        rows.append(
            (
                f"{automation.kind}:{o.occurrence}",
                o.customer_id,
                automation.channel,
                automation.kind in MARKETING,
                automation.kind,
                o.order_id,
                automation.template_id,
                recipient_for(
                    automation.channel, contact and contact.mobile, contact and contact.email, o.customer_id
                ),
                dumps_text(variables),
                automation.coupon_template_id,
                o.not_before or now,
            )
        )
    rows.sort(key=lambda row: row[:3])  # one lock order on the once-only key across transactions
    stored = (
        await session.execute(_QUEUE_MESSAGES, {"shop": shop_id} | as_arrays(_QUEUE_COLUMNS, rows))
    ).all()
    await sender.send_inapp_now(
        session,
        shop_id,
        [
            Claimed(*row[1:])
            for row in stored
            if row.channel == Channel.INAPP and row.not_before <= now and row.coupon_template_id is None
        ],
    )
    return {row.source for row in stored}


async def queue(
    session: AsyncSession,
    sender: Sender,
    automation: Setting | Automation,
    customer_id: str,
    occurrence: str,
    *,
    not_before: datetime | None = None,
    order_id: str | None = None,
    variables: dict[str, Any] | None = None,
) -> bool:
    """Queue the automation's message for one occurrence; False when it was queued before."""
    return bool(
        await queue_many(
            session,
            sender,
            [Occurrence(automation, customer_id, occurrence, not_before, order_id, variables)],
        )
    )


async def cancel_reminders(session: AsyncSession, shop_id: str, reasons: dict[str, str]) -> None:
    """Cancel the queued 催付 of orders that are no longer unpaid, `{order_id: why}`."""
    if not reasons:
        return
    sources = {f"{Kind.UNPAID_REMINDER}:{order_id}": why for order_id, why in reasons.items()}
    # Found by source alone, through uq_messages_once, and locked (a dispatcher skips locked rows; one
    # holding this row is waited for, and then its outcome is what is read). With the status in the
    # condition the planner took ix_messages_due instead, and walked the entries every message sent
    # since the last vacuum left there: 5 ms per run of order events, a run that usually finds nothing.
    found = (
        await session.execute(
            text(
                "SELECT id, source, status FROM messaging.messages "
                "WHERE shop_id = :shop AND source = ANY(:sources) FOR UPDATE"
            ),
            {"shop": shop_id, "sources": list(sources)},
        )
    ).all()
    queued = [row for row in found if row.status == "queued"]
    if not queued:
        return
    await session.execute(
        text(
            "UPDATE messaging.messages m SET status = 'cancelled', reason = v.reason "
            "FROM unnest(CAST(:ids AS bigint[]), CAST(:reasons AS text[])) AS v(id, reason) WHERE m.id = v.id"
        ),
        {"ids": [row.id for row in queued], "reasons": [sources[row.source] for row in queued]},
    )


async def no_longer_due(session: AsyncSession, shop_id: str, messages: Sequence[Claimed]) -> dict[int, str]:
    """Checked again at send time: a 催付 whose order is no longer unpaid is cancelled, with why."""
    reminders = {m.order_id: m.id for m in messages if m.automation == Kind.UNPAID_REMINDER and m.order_id}
    if not reminders:
        return {}
    rows = await session.execute(PAID_OR_CLOSED, {"shop": shop_id, "ids": list(reminders)})
    return {reminders[order_id]: f"order is {status} now" for order_id, status in rows}


# -- jobs that wait on time ---------------------------------------------------------------------------

_JOBS_LOCK = 0x4C414F4B_4D534701  # one replica at a time runs the time-driven automations


async def run_jobs(db: Database, sender: Sender, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            async with db.transaction() as session:
                locked = await session.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _JOBS_LOCK})
                if locked:
                    await due_problem_shipments(session, sender, clock.now())
                    await due_birthdays(session, sender, clock.now())
        except Exception:
            log.exception("automation_jobs_failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), sender.settings.jobs_seconds)


async def _enabled(session: AsyncSession, kind: Kind) -> list[Automation]:
    """Every shop's automation of `kind` that is on (the time-driven jobs run for all shops)."""
    rows = await session.scalars(select(Automation).where(Automation.kind == kind.value, Automation.enabled))
    return list(rows)


async def due_problem_shipments(session: AsyncSession, sender: Sender, now: datetime) -> int:
    """疑难件: orders shipped longer ago than the shop's delay and still not completed; each gets its
    message and a follow-up ticket, once."""
    queued = 0
    for automation in await _enabled(session, Kind.PROBLEM_SHIPMENT):
        since = now - timedelta(minutes=automation.delay_minutes)
        rows = (
            await session.execute(
                text(
                    "SELECT o.order_id, o.customer_id, o.external_order_id FROM messaging.orders o "
                    "WHERE o.shop_id = :shop AND o.status = 'shipped' AND o.shipped_at <= :since "
                    "AND NOT EXISTS (SELECT 1 FROM messaging.messages m WHERE m.shop_id = o.shop_id "
                    "  AND m.source = 'problem_shipment:' || o.order_id) LIMIT 10000"
                ),
                {"shop": automation.shop_id, "since": since},
            )
        ).all()
        new = await queue_many(
            session,
            sender,
            [Occurrence(automation, c, o, None, o, {"order_id": external}) for o, c, external in rows],
        )
        for order_id, customer_id, external_id in rows:
            if f"{Kind.PROBLEM_SHIPMENT}:{order_id}" in new:
                session.add(
                    Feedback(
                        shop_id=automation.shop_id,
                        id=new_id("fbk"),
                        customer_id=customer_id,
                        order_id=order_id,
                        kind="problem_shipment",
                        subject=f"疑难件: order {external_id} shipped but not completed",
                    )
                )
        queued += len(new)
    return queued


async def due_birthdays(session: AsyncSession, sender: Sender, now: datetime) -> int:
    """Birthdays on the shop-local date; the year makes one greeting per birthday."""
    queued = 0
    for automation in await _enabled(session, Kind.BIRTHDAY):
        today = now.astimezone((await policy.load(session, automation.shop_id)).zone).date()
        customers = await session.scalars(
            text(
                "SELECT customer_id FROM messaging.contacts WHERE shop_id = :shop "
                "AND extract(month FROM birthday) = :m AND extract(day FROM birthday) = :d"
            ),
            {"shop": automation.shop_id, "m": today.month, "d": today.day},
        )
        occurrences = [Occurrence(automation, c, f"{today.year}:{c}") for c in customers]
        queued += len(await queue_many(session, sender, occurrences))
    return queued
