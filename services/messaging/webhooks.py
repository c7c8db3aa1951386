"""Outbound webhooks for third-party apps: the shop's events, POSTed to the app's URL.

Each delivery is signed: `X-Laoke-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>"
with the subscription's secret>`, and names the event (`X-Laoke-Event-Id`, which a receiver dedupes
on: delivery is at least once). A failed delivery (no answer in 10 s, or not 2xx) is retried after
10 s, 1 min, 5 min, 30 min, 2 h and 6 h, then given up; a subscription whose deliveries fail
`webhook_disable_after` times in a row is disabled (its log says why) until the app subscribes again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
from datetime import datetime, timedelta

import httpx
import structlog
from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.contracts.envelope import EventEnvelope
from laoke.kit import clock
from laoke.kit.cache import TtlCache
from laoke.kit.db import Database
from services.messaging import targets
from services.messaging.models import Subscription, WebhookDelivery
from services.messaging.settings import MessagingSettings

log = structlog.get_logger(__name__)

# The events an app may subscribe to ("*" for all of them).
EVENT_TYPES = (
    "order.created",
    "order.paid",
    "order.shipped",
    "order.completed",
    "order.closed",
    "order.refunded",
    "customer.merged",
    "customer.lifecycle_changed",
    "customer.rfm_changed",
    "customer.profile_updated",
    "segment.entered",
    "segment.exited",
    "loyalty.points_changed",
    "loyalty.tier_changed",
    "loyalty.tiers_renamed",
    "loyalty.points_expiring",
    "coupon.issued",
    "coupon.redeemed",
)
RETRY_AFTER = (
    timedelta(seconds=10),
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=6),
)
CLAIM = 100

_subscribers: TtlCache[list[tuple[str, list[str]]]] = TtlCache(seconds=5)


def signature(secret: str, timestamp: int, body: str) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


async def _subscriptions(session: AsyncSession, shop_id: str) -> list[tuple[str, list[str]]]:
    hit, cached = _subscribers.get(shop_id)
    if hit and cached is not None:
        return cached
    rows = await session.execute(
        select(Subscription.id, Subscription.events).where(
            Subscription.shop_id == shop_id, Subscription.active
        )
    )
    return _subscribers.put(shop_id, [(r.id, list(r.events)) for r in rows])


def forget(shop_id: str) -> None:
    _subscribers.forget(shop_id)


async def enqueue(session: AsyncSession, event: EventEnvelope) -> int:
    """A delivery per active subscription that wants this event; a redelivered event adds none."""
    wanted = [
        s
        for s, events in await _subscriptions(session, event.shop_id)
        if "*" in events or event.type in events
    ]
    if not wanted:
        return 0
    body = json.dumps(
        {
            "event_id": str(event.event_id),
            "type": event.type,
            "shop_id": event.shop_id,
            "occurred_at": event.occurred_at.isoformat(),
            "payload": event.payload,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )
    await session.execute(
        insert(WebhookDelivery)
        .values(
            [
                {
                    "shop_id": event.shop_id,
                    "subscription_id": subscription_id,
                    "event_id": str(event.event_id),
                    "event_type": event.type,
                    "body": body,
                    "next_attempt_at": clock.now(),
                }
                for subscription_id in wanted
            ]
        )
        .on_conflict_do_nothing(constraint="uq_webhook_deliveries_once")
    )
    return len(wanted)


async def deliver_due(db: Database, client: httpx.AsyncClient, settings: MessagingSettings) -> int:
    """One round: claim due deliveries, POST them concurrently, record each outcome."""
    async with db.transaction() as session:
        now = clock.now()
        rows = (
            await session.execute(
                text(
                    "SELECT d.id, d.shop_id, d.subscription_id, d.event_id, d.event_type, d.body, "
                    "       d.attempts, s.url, s.secret, s.active "
                    "FROM messaging.webhook_deliveries d LEFT JOIN messaging.subscriptions s "
                    "  ON s.shop_id = d.shop_id AND s.id = d.subscription_id "
                    "WHERE d.status = 'pending' AND d.next_attempt_at <= :now "
                    "ORDER BY d.next_attempt_at LIMIT :limit FOR UPDATE OF d SKIP LOCKED"
                ),
                {"now": now, "limit": CLAIM},
            )
        ).all()
        if not rows:
            return 0

        async def post(row: object) -> tuple[int | None, str | None]:
            if not row.active:  # type: ignore[attr-defined]
                return None, "subscription disabled or deleted"
            stamp = int(now.timestamp())
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "Laoke-Webhooks/1.0",
                "X-Laoke-Event-Id": row.event_id,  # type: ignore[attr-defined]
                "X-Laoke-Event-Type": row.event_type,  # type: ignore[attr-defined]
                "X-Laoke-Signature": signature(row.secret, stamp, row.body),  # type: ignore[attr-defined]
            }
            try:
                if not settings.private_webhooks_allowed:
                    await targets.check_resolved(row.url)  # type: ignore[attr-defined]
                response = await client.post(row.url, content=row.body.encode(), headers=headers)  # type: ignore[attr-defined]
            except targets.PrivateTarget as exc:
                return None, f"refused: {exc}"[:300]
            except httpx.HTTPError as exc:
                return None, f"{type(exc).__name__}: {exc}"[:300]
            if 200 <= response.status_code < 300:
                return response.status_code, None
            return response.status_code, f"answered {response.status_code}"

        outcomes = await asyncio.gather(*(post(r) for r in rows))
        for row, (code, error) in zip(rows, outcomes, strict=True):
            await _record(session, settings, row, code, error, now)
        return len(rows)


async def _record(
    session: AsyncSession,
    settings: MessagingSettings,
    row: object,
    code: int | None,
    error: str | None,
    now: datetime,
) -> None:
    delivery = await session.get(WebhookDelivery, row.id)  # type: ignore[attr-defined]
    assert delivery is not None
    delivery.attempts += 1
    delivery.last_status_code, delivery.last_error = code, error
    subscription = await session.get(Subscription, (row.shop_id, row.subscription_id), with_for_update=True)  # type: ignore[attr-defined]
    if error is None:
        delivery.status, delivery.delivered_at = "delivered", now
        if subscription is not None:
            subscription.consecutive_failures = 0
        return
    if subscription is None or not subscription.active:
        delivery.status = "failed"
        return
    if delivery.attempts > len(RETRY_AFTER):
        delivery.status = "failed"
    else:
        delivery.next_attempt_at = now + RETRY_AFTER[delivery.attempts - 1]
    subscription.consecutive_failures += 1
    if subscription.consecutive_failures >= settings.webhook_disable_after:
        subscription.active, subscription.disabled_at = False, now
        subscription.disabled_reason = (
            f"{subscription.consecutive_failures} deliveries failed in a row; last: {error}"
        )[:300]
        forget(subscription.shop_id)
        log.warning("webhook_subscription_disabled", subscription=subscription.id, reason=error)


async def run(db: Database, settings: MessagingSettings, stop: asyncio.Event) -> None:
    async with httpx.AsyncClient(timeout=httpx.Timeout(10), follow_redirects=False) as client:
        while not stop.is_set():
            handled = 0
            try:
                handled = await deliver_due(db, client, settings)
            except Exception:
                log.exception("webhook_delivery_failed")
            if handled < CLAIM:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), settings.webhook_seconds)
