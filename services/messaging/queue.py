"""The `messages` table as a queue: what a dispatcher claims, what it decided for each message, and the
set-based statements that write those decisions back."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.messaging import deliveries
from services.messaging.channels import Outcome


@dataclass
class Claimed:
    id: int
    shop_id: str
    source: str
    customer_id: str
    channel: str
    marketing: bool
    automation: str | None
    order_id: str | None
    campaign_id: str | None
    template_id: str
    recipient: str | None
    variables: dict[str, Any]
    coupon_template_id: str | None
    coupon_code: str | None
    attempts: int


@dataclass
class Verdicts:
    """What the cycle decided for each claimed message, written back in one statement per kind."""

    sent: list[Outcome] = field(default_factory=list)
    retry: list[Outcome] = field(default_factory=list)
    failed: list[Outcome] = field(default_factory=list)
    suppressed: list[tuple[int, str]] = field(default_factory=list)
    cancelled: list[tuple[int, str]] = field(default_factory=list)
    deferred: list[tuple[int, datetime]] = field(default_factory=list)
    rendered: dict[int, tuple[str | None, str]] = field(default_factory=dict)
    codes: dict[int, str] = field(default_factory=dict)
    # Vendor calls to make once the claim is committed, and the rows they cover (marked `sending`).
    calls: list[Callable[[], Awaitable[list[Outcome]]]] = field(default_factory=list)
    sending: list[tuple[int, str | None]] = field(default_factory=list)  # (message, our OutId)


# The columns of a `Claimed`, in its order.
CLAIMED_COLUMNS = (
    "id, shop_id, source, customer_id, channel, marketing, automation, order_id, campaign_id, template_id, "
    "recipient, variables, coupon_template_id, coupon_code, attempts"
)
CLAIM = f"""
    SELECT not_before, {CLAIMED_COLUMNS}
    FROM messaging.messages
    WHERE status = 'queued' AND not_before <= :now {{after}}
    ORDER BY not_before, id
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
"""  # noqa: S608 - a constant of this module
# A queue table's index keeps the entries of rows that left the queue until vacuum; scanning from the
# start every cycle would wade through all of them during a big campaign. So a dispatcher carries on
# after the last row it claimed, and goes back to the start whenever that finds less than a batch
# (rows that became due behind the position — a retry, a reminder — are taken then).
CLAIM_FROM_START = text(CLAIM.format(after=""))
CLAIM_AFTER = text(CLAIM.format(after="AND (not_before, id) > (:after_time, :after_id)"))


async def opted_out(session: AsyncSession, shop_id: str, customers: set[str]) -> set[tuple[str, str]]:
    rows = await session.execute(
        text(
            "SELECT customer_id, channel FROM messaging.consents "
            "WHERE shop_id = :shop AND NOT subscribed AND customer_id = ANY(:ids)"
        ),
        {"shop": shop_id, "ids": list(customers)},
    )
    return {(r[0], r[1]) for r in rows}


# How many marketing messages each of some buyers was sent since a moment. One index probe per buyer
# (ix_messages_customer): with `customer_id = ANY(...)` the planner may walk a campaign's whole index
# instead, filtering a thousand ids per row.
MARKETING_SENT = text(
    "SELECT c.id, n.sent FROM unnest(CAST(:ids AS text[])) AS c(id) CROSS JOIN LATERAL ("
    "  SELECT count(*) AS sent FROM messaging.messages m WHERE m.shop_id = :shop "
    "  AND m.customer_id = c.id AND m.marketing AND m.status IN ('sent', 'delivered') "
    "  AND m.sent_at > :since) n WHERE n.sent > 0"
)


async def marketing_sent(
    session: AsyncSession, shop_id: str, messages: list[Claimed], since: datetime
) -> defaultdict[str, int]:
    customers = list({m.customer_id for m in messages if m.marketing})
    counts: defaultdict[str, int] = defaultdict(int)
    if not customers:
        return counts
    rows = await session.execute(MARKETING_SENT, {"shop": shop_id, "ids": customers, "since": since})
    counts.update({r[0]: int(r[1]) for r in rows})
    return counts


async def mark_sending(session: AsyncSession, verdicts: Verdicts, lease_end: datetime) -> None:
    """Commit what is about to go to a vendor, with its text and a lease: if this process stops before
    recording the outcome, `Dispatcher.recover` settles the rows when the lease runs out."""
    if not verdicts.sending:
        return
    ids = [i for i, _ in verdicts.sending]
    await session.execute(
        text(
            "UPDATE messaging.messages m SET status = 'sending', not_before = :lease_end, "
            "provider_message_id = v.out_id, subject = v.subject, body = v.body, "
            "coupon_code = coalesce(v.code, m.coupon_code) "
            "FROM unnest(CAST(:ids AS bigint[]), CAST(:outs AS text[]), CAST(:subjects AS text[]), "
            "CAST(:bodies AS text[]), CAST(:codes AS text[])) AS v(id, out_id, subject, body, code) "
            "WHERE m.id = v.id"
        ),
        {
            "lease_end": lease_end,
            "ids": ids,
            "outs": [o for _, o in verdicts.sending],
            "subjects": [verdicts.rendered.get(i, (None, ""))[0] for i in ids],
            "bodies": [verdicts.rendered.get(i, (None, ""))[1] for i in ids],
            "codes": [verdicts.codes.get(i) for i in ids],
        },
    )


async def record(
    session: AsyncSession, verdicts: Verdicts, now: datetime, max_attempts: int, *, in_flight: bool = False
) -> None:
    """Write every verdict back, one set-based statement per kind. `in_flight`: outcomes of vendor
    calls, written only over rows still `sending` (recovery may have settled them meanwhile)."""

    if verdicts.sent:
        ids = [o.id for o in verdicts.sent]
        await session.execute(
            text(
                "UPDATE messaging.messages m SET status = 'sent', sent_at = :now, attempts = m.attempts + 1, "
                "reason = NULL, provider_message_id = v.provider, subject = v.subject, body = v.body, "
                "coupon_code = coalesce(v.code, m.coupon_code) "
                "FROM unnest(CAST(:ids AS bigint[]), CAST(:providers AS text[]), CAST(:subjects AS text[]), "
                "CAST(:bodies AS text[]), CAST(:codes AS text[])) AS v(id, provider, subject, body, code) "
                "WHERE m.id = v.id AND (NOT CAST(:in_flight AS boolean) OR m.status = 'sending')"
            ),
            {
                "in_flight": in_flight,
                "now": now,
                "ids": ids,
                "providers": [o.provider_message_id for o in verdicts.sent],
                "subjects": [verdicts.rendered.get(i, (None, ""))[0] for i in ids],
                "bodies": [verdicts.rendered.get(i, (None, ""))[1] for i in ids],
                "codes": [verdicts.codes.get(i) for i in ids],
            },
        )
        vendor_ids = [o.id for o in verdicts.sent if o.provider_message_id]
        if vendor_ids:  # reports the vendor pushed before this answer reached us, kept meanwhile
            await deliveries.apply_early_reports(session, vendor_ids)
    if verdicts.retry:
        # Backoff 30 s, 2 min, 8 min …; the last attempt fails the message for good.
        await session.execute(
            text(
                "UPDATE messaging.messages m SET attempts = m.attempts + 1, reason = v.reason, "
                "status = CASE WHEN m.attempts + 1 >= :max THEN 'failed' ELSE 'queued' END, "
                "not_before = CAST(:now AS timestamptz) + make_interval(secs => 30 * power(4, m.attempts)) "
                "FROM unnest(CAST(:ids AS bigint[]), CAST(:reasons AS text[])) AS v(id, reason) "
                "WHERE m.id = v.id AND (NOT CAST(:in_flight AS boolean) OR m.status = 'sending')"
            ),
            {
                "in_flight": in_flight,
                "now": now,
                "max": max_attempts,
                "ids": [o.id for o in verdicts.retry],
                "reasons": [o.reason for o in verdicts.retry],
            },
        )
    for status, pairs in (
        ("failed", [(o.id, o.reason or "failed") for o in verdicts.failed]),
        ("suppressed", verdicts.suppressed),
        ("cancelled", verdicts.cancelled),
    ):
        if pairs:
            await session.execute(
                text(
                    "UPDATE messaging.messages m SET status = CAST(:status AS varchar), reason = v.reason, "
                    "attempts = m.attempts + CASE WHEN CAST(:status AS varchar) = 'failed' THEN 1 ELSE 0 END "
                    "FROM unnest(CAST(:ids AS bigint[]), CAST(:reasons AS text[])) AS v(id, reason) "
                    "WHERE m.id = v.id AND (NOT CAST(:in_flight AS boolean) OR m.status = 'sending')"
                ),
                {
                    "in_flight": in_flight,
                    "status": status,
                    "ids": [p[0] for p in pairs],
                    "reasons": [p[1] for p in pairs],
                },
            )
    if verdicts.deferred:
        await session.execute(
            text(
                "UPDATE messaging.messages m SET deferred = true, not_before = v.at "
                "FROM unnest(CAST(:ids AS bigint[]), CAST(:ats AS timestamptz[])) AS v(id, at) "
                "WHERE m.id = v.id"
            ),
            {"ids": [p[0] for p in verdicts.deferred], "ats": [p[1] for p in verdicts.deferred]},
        )
