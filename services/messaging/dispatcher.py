"""The dispatcher: takes due messages off the queue and sends them, checking everything at send time.

Each cycle claims up to `dispatch_batch` queued messages whose time has come (`FOR UPDATE SKIP LOCKED`,
so any number of replicas share the queue and none takes a row another holds), then, in this order:

1. an opt-out of the channel, also one that arrived after the message was queued → `suppressed`;
2. an automation whose reason is gone (the reminded order was paid) → `cancelled`;
3. marketing inside the shop's quiet hours → deferred to the end of them (still queued, not dropped);
4. marketing over the frequency cap (sent in the last `cap_days`, across channels) → `suppressed`;
5. the rest is rendered and sent: in-app by recording it, e-mail over SMTP, SMS in vendor batches.

Outcomes are written in the same transaction that holds the claim, so a process killed mid-send rolls
its claim back and another cycle sends those messages again. The one window left is a vendor accepting
a batch in the instant before our commit; the vendor's `OutId` (our message id) records it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import structlog
from fastapi import FastAPI
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.kit import clock, failpoints
from laoke.kit.db import Database
from laoke.kit.errors import LaokeError
from services.messaging import automations, campaigns, coupons, policy, templates, webhooks
from services.messaging.channels import (
    AliyunSms,
    Channel,
    EmailConfig,
    Outcome,
    Outgoing,
    RateLimiter,
    SmsConfig,
    TencentSms,
    load_config,
    send_email,
)
from services.messaging.consent import unsubscribe_url
from services.messaging.models import ChannelConfig, Contact, Shop
from services.messaging.settings import MessagingSettings

log = structlog.get_logger(__name__)

SMS_BATCH = 100
TENCENT_BATCH = 200
EMAIL_CONCURRENCY = 20
# How long a send may be in flight before recovery asks the vendor what became of it.
SEND_LEASE = timedelta(minutes=5)
RECOVER_EVERY_SECONDS = 30


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


_CLAIM = """
    SELECT not_before, id, shop_id, source, customer_id, channel, marketing, automation, order_id,
           campaign_id, template_id, recipient, variables, coupon_template_id, coupon_code, attempts
    FROM messaging.messages
    WHERE status = 'queued' AND not_before <= :now {after}
    ORDER BY not_before, id
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
"""
# A queue table's index keeps the entries of rows that left the queue until vacuum; scanning from the
# start every cycle would wade through all of them during a big campaign. So a dispatcher carries on
# after the last row it claimed, and goes back to the start whenever that finds less than a batch
# (rows that became due behind the position — a retry, a reminder — are taken then).
_CLAIM_FROM_START = text(_CLAIM.format(after=""))
_CLAIM_AFTER = text(_CLAIM.format(after="AND (not_before, id) > (:after_time, :after_id)"))


class Dispatcher:
    def __init__(self, db: Database, settings: MessagingSettings, name: str = "dispatcher") -> None:
        self.db, self.settings, self.name = db, settings, name
        self.limiter = RateLimiter()
        self.position: tuple[datetime, int] | None = None
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(settings.sms_timeout_seconds))

    async def run(self, stop: asyncio.Event) -> None:
        recovered_at = 0.0
        while not stop.is_set():
            try:
                if time.monotonic() - recovered_at > RECOVER_EVERY_SECONDS:
                    recovered_at = time.monotonic()
                    await self.recover()
                handled = await self.cycle()
            except Exception:  # a bad cycle must not stop sending; its claim rolled back
                log.exception("dispatch_cycle_failed")
                handled = 0
            if handled < self.settings.dispatch_batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.settings.dispatch_seconds)
        await self.http.aclose()

    async def cycle(self) -> int:
        """One claim, check and render (committed, with SMS and e-mail marked `sending`), then the vendor
        calls outside any transaction, then their outcomes. Returns how many messages it handled."""
        verdicts = Verdicts()
        async with self.db.transaction() as session:
            now = clock.now()
            limit = self.settings.dispatch_batch
            if self.position is None:
                rows = (await session.execute(_CLAIM_FROM_START, {"now": now, "limit": limit})).all()
            else:
                after_time, after_id = self.position
                params = {"now": now, "limit": limit, "after_time": after_time, "after_id": after_id}
                rows = (await session.execute(_CLAIM_AFTER, params)).all()
            if len(rows) < limit:
                self.position = None
            if not rows:
                return 0
            if len(rows) == limit:
                self.position = (rows[-1][0], rows[-1][1])
            claimed = [Claimed(*row[1:]) for row in rows]
            by_shop: dict[str, list[Claimed]] = defaultdict(list)
            for message in claimed:
                by_shop[message.shop_id].append(message)
            for shop_id, messages in by_shop.items():
                await self._shop(session, shop_id, messages, now, verdicts)
            await _record(session, verdicts, now, self.settings.send_max_attempts)
            await _mark_sending(session, verdicts, now + SEND_LEASE)
        if verdicts.calls:
            failpoints.hit(f"{self.name}.before_vendor_calls")
            outcomes = [o for call in verdicts.calls for o in await call()]
            failpoints.hit(f"{self.name}.after_vendor_calls")
            sent = Verdicts(rendered=verdicts.rendered)
            for outcome in outcomes:
                _file(sent, outcome)
            async with self.db.transaction() as session:
                await _record(session, sent, clock.now(), self.settings.send_max_attempts, in_flight=True)
        return len(claimed)

    async def recover(self) -> int:
        """Sends whose process stopped between the vendor call and its record (the lease ran out): an SMS
        the vendor has under our OutId is `sent`; anything else is queued again."""
        async with self.db.transaction() as session:
            rows = (
                await session.execute(
                    text(
                        "SELECT id, shop_id, channel, recipient, provider_message_id, not_before "
                        "FROM messaging.messages WHERE status = 'sending' AND not_before <= :now "
                        "ORDER BY not_before, id LIMIT 500 FOR UPDATE SKIP LOCKED"
                    ),
                    {"now": clock.now()},
                )
            ).all()
            sent: list[int] = []
            again: list[int] = []
            vendors: dict[str, AliyunSms | None] = {}
            for message_id, shop_id, channel, recipient, out_id, lease_end in rows:
                if channel != Channel.SMS or not out_id:
                    again.append(message_id)
                    continue
                if shop_id not in vendors:
                    vendors[shop_id] = await self._vendor(session, shop_id)
                vendor = vendors[shop_id]
                day = lease_end - SEND_LEASE
                known = await vendor.sent_out_ids(recipient, day) if vendor is not None else None
                if known is None:
                    continue  # the vendor cannot say now: ask again on the next round
                (sent if out_id.removeprefix("out:") in known else again).append(message_id)
            if sent:
                await session.execute(
                    text(
                        "UPDATE messaging.messages SET status = 'sent', "
                        "sent_at = not_before - CAST(:lease AS interval), "
                        "attempts = attempts + 1 WHERE id = ANY(:ids)"
                    ),
                    {"ids": sent, "lease": SEND_LEASE},
                )
            if again:
                await session.execute(
                    text(
                        "UPDATE messaging.messages SET status = 'queued', not_before = :now, "
                        "reason = 'sent again: the last attempt stopped before its outcome was known' "
                        "WHERE id = ANY(:ids)"
                    ),
                    {"ids": again, "now": clock.now()},
                )
            if rows:
                log.warning("sends_recovered", sent=len(sent), queued_again=len(again))
            return len(sent) + len(again)

    async def _vendor(self, session: AsyncSession, shop_id: str) -> AliyunSms | TencentSms | None:
        config = await load_config(session, shop_id, Channel.SMS)
        row = await session.get(ChannelConfig, (shop_id, Channel.SMS))
        if not isinstance(config, SmsConfig) or row is None:
            return None
        secret = row.settings.get("access_key_secret") or ""
        if config.provider == "tencent":
            return TencentSms(self.http, self.settings.tencent_sms_endpoint, config, secret)
        return AliyunSms(self.http, self.settings.aliyun_sms_endpoint, config, secret)

    async def _shop(
        self, session: AsyncSession, shop_id: str, messages: list[Claimed], now: datetime, verdicts: Verdicts
    ) -> None:
        rules = await policy.load(session, shop_id)
        opted_out = await _opted_out(session, shop_id, {m.customer_id for m in messages})
        gone = await automations.no_longer_due(session, shop_id, messages)
        quiet_until = rules.quiet_until(now)
        sent_lately = await _marketing_sent(session, shop_id, messages, now - timedelta(days=rules.cap_days))
        ready: list[Claimed] = []
        for message in messages:
            if (message.customer_id, message.channel) in opted_out:
                verdicts.suppressed.append((message.id, f"opted out of {message.channel}"))
            elif message.recipient is None:
                verdicts.suppressed.append((message.id, f"no valid {_contact_word(message.channel)}"))
            elif message.id in gone:
                verdicts.cancelled.append((message.id, gone[message.id]))
            elif message.marketing and quiet_until is not None:
                verdicts.deferred.append((message.id, quiet_until))
            elif message.marketing and sent_lately[message.customer_id] >= rules.cap_messages:
                verdicts.suppressed.append(
                    (message.id, f"frequency cap: {rules.cap_messages} in {rules.cap_days} days")
                )
            else:
                if message.marketing:
                    sent_lately[message.customer_id] += 1
                ready.append(message)
        if not ready:
            return
        ready = await coupons.attach(session, self.settings, shop_id, ready, verdicts)
        outgoing = await self._render(session, shop_id, ready, verdicts)
        by_channel: dict[str, list[tuple[Claimed, Outgoing]]] = defaultdict(list)
        for message, out in outgoing:
            by_channel[message.channel].append((message, out))
        for channel, items in by_channel.items():
            config = await load_config(session, shop_id, channel)
            if config is None or not config.enabled:  # type: ignore[attr-defined]
                reason = f"{channel} channel is not configured or is disabled for this shop"
                verdicts.failed += [Outcome(m.id, ok=False, reason=reason) for m, _ in items]
                continue
            outs = [out for _, out in items]
            if channel == Channel.INAPP:
                verdicts.sent += [Outcome(o.id, ok=True) for o in outs]
            elif channel == Channel.EMAIL:
                assert isinstance(config, EmailConfig)
                self._email(config, outs, verdicts)
            else:
                await self._sms(session, shop_id, outs, verdicts)

    async def _render(
        self, session: AsyncSession, shop_id: str, messages: list[Claimed], verdicts: Verdicts
    ) -> list[tuple[Claimed, Outgoing]]:
        wanted = {m.template_id for m in messages}
        found = (
            await session.execute(
                text(
                    "SELECT id, subject, body, coalesce(provider_template_code, id) FROM messaging.templates "
                    "WHERE shop_id = :shop AND id = ANY(:ids)"
                ),
                {"shop": shop_id, "ids": list(wanted)},
            )
        ).all()
        by_id = {row[0]: row for row in found}
        shop = await session.get(Shop, shop_id)
        # Events of other topics may overtake the order that tells us who the buyer is: what the message
        # did not know when it was queued is taken from the contact as it is now.
        unnamed = {m.customer_id for m in messages if m.variables.get("name") is None}
        known: dict[str, dict[str, Any]] = {}
        if unnamed:
            rows = await session.execute(
                select(Contact.customer_id, Contact.name, Contact.tier, Contact.points).where(
                    Contact.shop_id == shop_id, Contact.customer_id.in_(unnamed)
                )
            )
            known = {r.customer_id: {"name": r.name, "tier": r.tier, "points": r.points} for r in rows}
        out: list[tuple[Claimed, Outgoing]] = []
        for message in messages:
            template = by_id.get(message.template_id)
            if template is None:
                verdicts.failed.append(Outcome(message.id, ok=False, reason="template was deleted"))
                continue
            now_known = {k: v for k, v in known.get(message.customer_id, {}).items() if v is not None}
            variables = now_known | {k: v for k, v in message.variables.items() if v is not None}
            variables.setdefault("name", "顾客")
            variables.setdefault("shop_name", shop.name if shop else "")
            if message.coupon_code:
                variables["coupon_code"] = message.coupon_code
            link = None
            if message.channel == Channel.EMAIL:
                link = unsubscribe_url(self.settings, shop_id, message.customer_id, message.channel)
                variables["unsubscribe_url"] = link
            try:
                subject = templates.render(template[1], variables) if template[1] else None
                body = templates.render(template[2], variables)
            except LaokeError as exc:
                verdicts.failed.append(Outcome(message.id, ok=False, reason=exc.detail[:300]))
                continue
            verdicts.rendered[message.id] = (subject, body)
            used = templates.variables_in_order(template[2])
            vendor_variables = {k: str(variables[k]) for k in used if k in variables}
            out.append(
                (
                    message,
                    Outgoing(
                        message.id,
                        message.customer_id,
                        message.recipient or "",
                        subject,
                        body,
                        template[3],
                        vendor_variables,
                        link,
                    ),
                )
            )
        return out

    def _email(self, config: EmailConfig, messages: list[Outgoing], verdicts: Verdicts) -> None:
        gate = asyncio.Semaphore(EMAIL_CONCURRENCY)

        async def one(message: Outgoing) -> Outcome:
            async with gate:
                return await send_email(self.settings, config, message)

        async def call() -> list[Outcome]:
            return list(await asyncio.gather(*(one(m) for m in messages)))

        verdicts.sending += [(m.id, None) for m in messages]
        verdicts.calls.append(call)

    async def _sms(
        self, session: AsyncSession, shop_id: str, messages: list[Outgoing], verdicts: Verdicts
    ) -> None:
        vendor = await self._vendor(session, shop_id)
        assert vendor is not None
        rate = vendor.config.rate_per_second
        # Aliyun takes parameters per number (batches of 100 per template); Tencent one parameter list per
        # call (batches of 200 per template and values).
        tencent = isinstance(vendor, TencentSms)
        size = TENCENT_BATCH if tencent else SMS_BATCH
        groups: dict[tuple[str, ...], list[Outgoing]] = defaultdict(list)
        for message in messages:
            values = tuple(message.variables.values()) if tencent else ()
            groups[(message.template_code, *values)].append(message)
        for group in groups.values():
            for start in range(0, len(group), size):
                batch = group[start : start + size]
                out_id = uuid.uuid4().hex[:20]  # the vendor keeps it with each number (QuerySendDetails)

                async def call(batch: list[Outgoing] = batch, out_id: str = out_id) -> list[Outcome]:
                    await self.limiter.wait(f"{shop_id}:sms", rate)
                    return await vendor.send_batch(batch, out_id)

                verdicts.sending += [(m.id, f"out:{out_id}") for m in batch]
                verdicts.calls.append(call)


def _file(verdicts: Verdicts, outcome: Outcome) -> None:
    if outcome.ok:
        verdicts.sent.append(outcome)
    elif outcome.retry:
        verdicts.retry.append(outcome)
    else:
        verdicts.failed.append(outcome)


def _contact_word(channel: str) -> str:
    return {"sms": "mobile number", "email": "e-mail address"}.get(channel, "recipient")


async def _opted_out(session: AsyncSession, shop_id: str, customers: set[str]) -> set[tuple[str, str]]:
    rows = await session.execute(
        text(
            "SELECT customer_id, channel FROM messaging.consents "
            "WHERE shop_id = :shop AND NOT subscribed AND customer_id = ANY(:ids)"
        ),
        {"shop": shop_id, "ids": list(customers)},
    )
    return {(r[0], r[1]) for r in rows}


async def _marketing_sent(
    session: AsyncSession, shop_id: str, messages: list[Claimed], since: datetime
) -> defaultdict[str, int]:
    customers = list({m.customer_id for m in messages if m.marketing})
    counts: defaultdict[str, int] = defaultdict(int)
    if not customers:
        return counts
    rows = await session.execute(
        text(
            # One index probe per buyer (ix_messages_customer): with `customer_id = ANY(...)` the planner
            # may walk a campaign's whole index instead, filtering a thousand ids per row.
            "SELECT c.id, n.sent FROM unnest(CAST(:ids AS text[])) AS c(id) CROSS JOIN LATERAL ("
            "  SELECT count(*) AS sent FROM messaging.messages m WHERE m.shop_id = :shop "
            "  AND m.customer_id = c.id AND m.marketing AND m.status IN ('sent', 'delivered') "
            "  AND m.sent_at > :since) n WHERE n.sent > 0"
        ),
        {"shop": shop_id, "ids": customers, "since": since},
    )
    counts.update({r[0]: int(r[1]) for r in rows})
    return counts


async def _mark_sending(session: AsyncSession, verdicts: Verdicts, lease_end: datetime) -> None:
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


async def _record(
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


async def run_campaigns(db: Database, settings: MessagingSettings, stop: asyncio.Event) -> None:
    """Snapshots due campaigns (one per transaction, skipping those another replica holds) and
    completes the ones with nothing left to send."""
    while not stop.is_set():
        started = 0
        try:
            async with db.transaction() as session:
                started = await campaigns.start_due(session, settings, clock.now())
            async with db.transaction() as session:
                await campaigns.complete_finished(session, clock.now())
        except Exception:
            log.exception("campaign_jobs_failed")
        if not started:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), settings.campaign_seconds)


def dispatcher_lifespan(
    settings: MessagingSettings, *, enabled: bool
) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not enabled:
            yield
            return
        stop = asyncio.Event()
        loops = [
            # Several loops per process: while one waits on PostgreSQL another renders and sends.
            *(
                asyncio.create_task(Dispatcher(app.state.db, settings).run(stop), name=f"dispatcher-{n}")
                for n in range(settings.dispatch_loops)
            ),
            asyncio.create_task(automations.run_jobs(app.state.db, settings, stop), name="automation-jobs"),
            asyncio.create_task(run_campaigns(app.state.db, settings, stop), name="campaign-jobs"),
            asyncio.create_task(webhooks.run(app.state.db, settings, stop), name="webhook-deliveries"),
        ]
        try:
            yield
        finally:
            stop.set()
            await asyncio.gather(*loops, return_exceptions=True)

    return lifespan
