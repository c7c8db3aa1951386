"""Campaigns: a message to a segment, with an audience snapshot, a random holdout and proof of lift.

Launching is quick (the segment is checked and the campaign scheduled); the audience is taken by the
campaign job (`start_due`): the segment's members stream from segmentation into a temp table, a random
`holdout_percent` of them is set aside, and one queued message per other member is inserted in one
statement. From there the dispatcher sends them under the usual consent, cap and quiet-hour checks.

Attribution is intention-to-treat: every targeted buyer (whether or not the message got through)
against the holdout, each counted converted when they paid an order within `attribution_days` of the
snapshot. Lift is the difference of the two conversion rates, with a 95 % Wald interval.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
import structlog
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.kit import clock
from laoke.kit.bulk import copy_feed_into
from laoke.kit.errors import Conflict, ServiceUnavailable, Unprocessable
from laoke.kit.internal_auth import sign
from services.messaging.models import Campaign
from services.messaging.settings import MessagingSettings

log = structlog.get_logger(__name__)

AUDIENCE_COLUMNS = (
    ("customer_id", "text"),
    ("name", "text"),
    ("mobile", "text"),
    ("email", "text"),
    ("tier", "text"),
    ("points", "bigint"),
)
# What the recipient column holds per channel; NULL when the contact is missing or malformed.
_RECIPIENT_SQL = """
    CASE :channel
      WHEN 'sms' THEN substring(regexp_replace(a.mobile, '[\\s-]', '', 'g')
                                FROM '^(?:\\+?86)?(1[3-9][0-9]{9})$')
      WHEN 'email' THEN CASE WHEN a.email ~ '^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$' THEN a.email END
      ELSE a.customer_id
    END
"""


async def segment_size(settings: MessagingSettings, shop_id: str, segment_id: str) -> int:
    """The segment's size now, from segmentation; a segment of another shop is not found."""
    path = f"/api/v1/segments/{segment_id}"
    headers = sign(settings.internal_secret, method="GET", path=path, shop_id=shop_id)
    try:
        async with httpx.AsyncClient(base_url=settings.segmentation_url, timeout=10) as client:
            response = await client.get(path, headers=headers)
    except httpx.HTTPError as exc:
        raise ServiceUnavailable(f"could not check segment {segment_id}: {type(exc).__name__}") from exc
    if response.status_code == 404:
        raise Unprocessable(f"segment {segment_id} not found")
    if response.status_code != 200:
        raise ServiceUnavailable(f"segmentation answered {response.status_code} for segment {segment_id}")
    return int(response.json()["size"])


async def launch(session: AsyncSession, settings: MessagingSettings, campaign: Campaign) -> None:
    if campaign.status != "draft":
        raise Conflict(f"campaign is {campaign.status}; only a draft can be launched")
    if await segment_size(settings, campaign.shop_id, campaign.segment_id) == 0:
        raise Conflict(f"segment {campaign.segment_id} has no members; nothing to send")
    campaign.status = "scheduled"
    campaign.launched_at = clock.now()
    if campaign.schedule_at is None or campaign.schedule_at < campaign.launched_at:
        campaign.schedule_at = campaign.launched_at


async def start_due(session: AsyncSession, settings: MessagingSettings, now: datetime) -> int:
    """Snapshot the audience of one due scheduled campaign (locked, so one replica takes it)."""
    campaign = await session.scalar(
        select(Campaign)
        .where(Campaign.status == "scheduled", Campaign.schedule_at <= now)
        .order_by(Campaign.schedule_at)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    if campaign is None:
        return 0
    started = time.perf_counter()
    try:
        await copy_feed_into(
            session,
            settings,
            base_url=settings.segmentation_url,
            path=f"/internal/v1/segments/{campaign.segment_id}/audience.csv",
            shop_id=campaign.shop_id,
            table="audience",
            columns=AUDIENCE_COLUMNS,
        )
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code != 404:
            raise
        campaign.status, campaign.completed_at = "failed", now
        return 1
    fed = time.perf_counter()
    await snapshot(session, campaign, now)
    log.info(
        "campaign_snapshot",
        campaign=campaign.id,
        targeted=campaign.targeted,
        holdout=campaign.holdout,
        feed_seconds=round(fed - started, 2),
        snapshot_seconds=round(time.perf_counter() - fed, 2),
    )
    return 1


async def snapshot(session: AsyncSession, campaign: Campaign, now: datetime) -> None:
    """From the `audience` temp table: recipients with a random holdout, and their queued messages."""
    params = {"shop": campaign.shop_id, "campaign": campaign.id}
    total = int(await session.scalar(text("SELECT count(DISTINCT customer_id) FROM audience")) or 0)
    held = math.floor(total * campaign.holdout_percent / 100)
    # No ON CONFLICT in either insert: the campaign is locked and still `scheduled`, so this transaction
    # is the only one ever to write its rows, and the audience is made distinct. (Checking each row for
    # a conflict that cannot happen cost half the snapshot: 23 s → 13 s for 1,000,000 buyers.) Rows go
    # in in customer order, which keeps the index inserts at the right edge of the B-tree.
    await session.execute(text("SELECT set_config('work_mem', '128MB', true)"))
    await session.execute(
        text(
            "INSERT INTO messaging.campaign_recipients (shop_id, campaign_id, customer_id, holdout) "
            "SELECT :shop, :campaign, customer_id, holdout FROM ("
            "  SELECT customer_id, row_number() OVER (ORDER BY random()) <= :held AS holdout "
            "  FROM (SELECT DISTINCT customer_id FROM audience) a) r ORDER BY customer_id"
        ),
        {**params, "held": held},
    )
    variants = campaign.variants_by_tier or {}
    await session.execute(
        text(
            f"""
            INSERT INTO messaging.messages (shop_id, source, customer_id, channel, marketing, campaign_id,
                template_id, status, reason, recipient, variables, coupon_template_id, not_before)
            SELECT :shop, 'campaign:' || :campaign, a.customer_id, :channel, true, :campaign,
                   coalesce(CAST(:variants AS jsonb) ->> a.tier, CAST(:variants AS jsonb) ->> '*', :template),
                   CASE WHEN r.recipient IS NULL THEN 'suppressed' ELSE 'queued' END,
                   CASE WHEN r.recipient IS NULL THEN :invalid END,
                   r.recipient,
                   jsonb_strip_nulls(jsonb_build_object('name', a.name, 'tier', a.tier, 'points', a.points)),
                   :coupon, :now
            FROM (SELECT DISTINCT ON (customer_id) * FROM audience) a
            JOIN messaging.campaign_recipients c
              ON c.shop_id = :shop AND c.campaign_id = :campaign AND c.customer_id = a.customer_id
            CROSS JOIN LATERAL (SELECT {_RECIPIENT_SQL} AS recipient) r
            WHERE NOT c.holdout
            ORDER BY a.customer_id
            """  # noqa: S608 - the interpolated SQL is a constant of this module
        ),
        {
            **params,
            "channel": campaign.channel,
            "variants": _json(variants),
            "template": campaign.template_id,
            "invalid": "no valid " + ("mobile number" if campaign.channel == "sms" else "e-mail address"),
            "coupon": campaign.coupon_template_id,
            "now": now,
        },
    )
    campaign.targeted, campaign.holdout = total - held, held
    campaign.snapshot_at, campaign.status = clock.now(), "sending"


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


async def pause(session: AsyncSession, campaign: Campaign) -> None:
    if campaign.status not in ("scheduled", "sending"):
        raise Conflict(f"campaign is {campaign.status}; only a scheduled or sending campaign can be paused")
    campaign.status = "paused"
    await _move(session, campaign, "queued", "paused")


async def resume(session: AsyncSession, campaign: Campaign) -> None:
    if campaign.status != "paused":
        raise Conflict(f"campaign is {campaign.status}; only a paused campaign can be resumed")
    campaign.status = "sending" if campaign.snapshot_at is not None else "scheduled"
    await _move(session, campaign, "paused", "queued")


async def cancel(session: AsyncSession, campaign: Campaign) -> None:
    if campaign.status in ("completed", "cancelled", "failed"):
        raise Conflict(f"campaign is {campaign.status} already")
    campaign.status, campaign.completed_at = "cancelled", clock.now()
    await _move(session, campaign, "queued", "cancelled")
    await _move(session, campaign, "paused", "cancelled")


async def _move(session: AsyncSession, campaign: Campaign, from_status: str, to_status: str) -> None:
    await session.execute(
        text(
            "UPDATE messaging.messages SET status = :to WHERE shop_id = :shop AND campaign_id = :campaign "
            "AND status = :from"
        ),
        {"shop": campaign.shop_id, "campaign": campaign.id, "from": from_status, "to": to_status},
    )


async def complete_finished(session: AsyncSession, now: datetime) -> int:
    """Sending campaigns with nothing left queued are completed."""
    result = await session.execute(
        text(
            "UPDATE messaging.campaigns c SET status = 'completed', completed_at = :now "
            "WHERE c.status = 'sending' AND NOT EXISTS (SELECT 1 FROM messaging.messages m "
            "  WHERE m.shop_id = c.shop_id AND m.campaign_id = c.id "
            "  AND m.status IN ('queued', 'paused', 'sending'))"
        ),
        {"now": now},
    )
    return result.rowcount or 0  # type: ignore[attr-defined]


@dataclass
class Report:
    statuses: dict[str, int]
    suppressed_by: dict[str, int]
    deferred: int
    converted: int
    revenue_fen: int
    holdout_converted: int


async def report(session: AsyncSession, campaign: Campaign) -> Report:
    params = {"shop": campaign.shop_id, "campaign": campaign.id}
    statuses = dict(
        (
            await session.execute(
                text(
                    "SELECT status, count(*) FROM messaging.messages "
                    "WHERE shop_id = :shop AND campaign_id = :campaign GROUP BY status"
                ),
                params,
            )
        ).all()
    )
    suppressed_by = dict(
        (
            await session.execute(
                text(
                    "SELECT CASE WHEN reason LIKE 'opted out%' THEN 'opt_out' "
                    "WHEN reason LIKE 'frequency cap%' THEN 'frequency_cap' ELSE 'invalid_contact' END, "
                    "count(*) FROM messaging.messages WHERE shop_id = :shop AND campaign_id = :campaign "
                    "AND status = 'suppressed' GROUP BY 1"
                ),
                params,
            )
        ).all()
    )
    deferred = int(
        await session.scalar(
            text(
                # ix_messages_deferred holds only deferred rows: no walk through the whole campaign.
                "SELECT count(*) FROM messaging.messages "
                "WHERE shop_id = :shop AND campaign_id = :campaign AND deferred"
            ),
            params,
        )
        or 0
    )
    converted = revenue = holdout_converted = 0
    if campaign.snapshot_at is not None:
        window_end = campaign.snapshot_at + timedelta(days=campaign.attribution_days)
        rows = (
            await session.execute(
                # From the orders paid in the window (ix_orders_paid) to their buyer's recipient row:
                # bounded by the window's orders. Driven from the recipients, a planner that does not
                # know a just-snapshotted campaign yet probed the orders once per recipient (2 s for
                # a million, on every look at the campaign).
                text(
                    "SELECT r.holdout, count(DISTINCT o.customer_id), "
                    "  coalesce(sum(o.paid_fen - o.refunded_fen), 0) "
                    "FROM messaging.orders o CROSS JOIN LATERAL ("
                    "  SELECT r.holdout FROM messaging.campaign_recipients r WHERE r.shop_id = o.shop_id "
                    "  AND r.campaign_id = :campaign AND r.customer_id = o.customer_id OFFSET 0) r "
                    "WHERE o.shop_id = :shop AND o.paid_at >= :start AND o.paid_at < :end "
                    "GROUP BY r.holdout"
                ),
                {**params, "start": campaign.snapshot_at, "end": window_end},
            )
        ).all()
        for holdout, buyers, fen in rows:
            if holdout:
                holdout_converted = int(buyers)
            else:
                converted, revenue = int(buyers), int(fen)
    return Report(statuses, suppressed_by, deferred, converted, revenue, holdout_converted)


def lift(converted: int, targeted: int, holdout_converted: int, holdout: int) -> tuple[float | None, ...]:
    """(rate of targeted, rate of holdout, lift, 95 % CI low, CI high); None where undefined."""
    rate = converted / targeted if targeted else None
    base = holdout_converted / holdout if holdout else None
    if rate is None or base is None:
        return rate, base, None, None, None
    difference = rate - base
    spread = 1.96 * math.sqrt(rate * (1 - rate) / targeted + base * (1 - base) / holdout)
    return rate, base, difference, difference - spread, difference + spread
