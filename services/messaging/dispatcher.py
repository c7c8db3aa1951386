"""The dispatcher: takes due messages off the queue and sends them, checking everything at send time.

Each cycle claims up to `dispatch_batch` queued messages whose time has come (`FOR UPDATE SKIP LOCKED`,
so any number of replicas share the queue and none takes a row another holds), then, in this order:

1. an opt-out of the channel, also one that arrived after the message was queued → `suppressed`;
2. an automation whose reason is gone (the reminded order was paid) → `cancelled`;
3. marketing inside the shop's quiet hours → deferred to the end of them (still queued, not dropped);
4. marketing over the frequency cap (sent in the last `cap_days`, across channels) → `suppressed`;
5. the rest is rendered and sent: in-app by recording it, e-mail over SMTP, SMS in vendor batches.

The same checks decide the in-app messages an automation queues, in the transaction that queues them
(`Sender.send_inapp_now`), and an in-app campaign's at its snapshot (services/messaging/campaigns.py).

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
from datetime import datetime, timedelta
from typing import Any

import httpx
import structlog
from sqlalchemy import Select, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.kit import clock, failpoints
from laoke.kit.db import Database
from laoke.kit.errors import LaokeError
from services.messaging import automations, coupons, deliveries, policy, queue, templates
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
# What a message may carry of its buyer, and the contact fills when it does not.
CONTACT_VARIABLES = ("name", "tier", "points")
TENCENT_BATCH = 200
EMAIL_CONCURRENCY = 20
# How long a send may be in flight before recovery asks the vendor what became of it.
RECOVER_EVERY_SECONDS = 30


def contact_variables(
    shop_id: str, customer_ids: set[str]
) -> Select[tuple[str, str | None, str | None, int | None]]:
    """What the contacts know now of the variables a message may lack."""
    return select(Contact.customer_id, Contact.name, Contact.tier, Contact.points).where(
        Contact.shop_id == shop_id, Contact.customer_id.in_(customer_ids)
    )


class Sender:
    """Decides what becomes of messages (the checks above), renders and sends them; the dispatcher
    feeds it what it claims from the queue, and an automation its in-app messages as it queues them."""

    def __init__(self, settings: MessagingSettings) -> None:
        self.settings = settings
        self.limiter = RateLimiter()
        self._http: httpx.AsyncClient | None = None

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:  # only SMS needs one
            self._http = httpx.AsyncClient(timeout=httpx.Timeout(self.settings.sms_timeout_seconds))
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    async def send_inapp_now(
        self, session: AsyncSession, shop_id: str, messages: list[queue.Claimed]
    ) -> None:
        """Send in-app messages in the transaction that queued them: nothing leaves Laoke, so there is
        no vendor call to wait for after commit, and the buyer's inbox has the message the moment the
        event that caused it is handled (no dispatcher cycle in between). Every check applies as at
        any send: an opt-out is suppressed, marketing in quiet hours stays queued for later."""
        if not messages:
            return
        verdicts = queue.Verdicts()
        now = clock.now()
        await self._shop(session, shop_id, messages, now, verdicts)
        assert not verdicts.calls, "only in-app messages are sent where they are queued"
        await queue.record(session, verdicts, now, self.settings.send_max_attempts)

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
        self,
        session: AsyncSession,
        shop_id: str,
        messages: list[queue.Claimed],
        now: datetime,
        verdicts: queue.Verdicts,
    ) -> None:
        # Held for the whole decision: policy.load and the rendering get it from the session's identity
        # map then (which keeps an object only while something references it) instead of querying again.
        shop = await session.get(Shop, shop_id)
        rules = await policy.load(session, shop_id)
        opted_out = await queue.opted_out(session, shop_id, {m.customer_id for m in messages})
        gone = await automations.no_longer_due(session, shop_id, messages)
        quiet_until = rules.quiet_until(now)
        sent_lately = await queue.marketing_sent(
            session, shop_id, messages, now - timedelta(days=rules.cap_days)
        )
        ready: list[queue.Claimed] = []
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
        outgoing = await self._render(session, shop, shop_id, ready, verdicts)
        by_channel: dict[str, list[tuple[queue.Claimed, Outgoing]]] = defaultdict(list)
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
        self,
        session: AsyncSession,
        shop: Shop | None,
        shop_id: str,
        messages: list[queue.Claimed],
        verdicts: queue.Verdicts,
    ) -> list[tuple[queue.Claimed, Outgoing]]:
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
        # Events of other topics may overtake the order that tells us who the buyer is: what the message
        # did not know when it was queued (name, tier, points) is taken from the contact as it is now.
        unknowing = {
            m.customer_id for m in messages if any(m.variables.get(k) is None for k in CONTACT_VARIABLES)
        }
        known: dict[str, dict[str, Any]] = {}
        if unknowing:
            rows = await session.execute(contact_variables(shop_id, unknowing))
            known = {r.customer_id: {"name": r.name, "tier": r.tier, "points": r.points} for r in rows}
        out: list[tuple[queue.Claimed, Outgoing]] = []
        for message in messages:
            template = by_id.get(message.template_id)
            if template is None:
                verdicts.failed.append(Outcome(message.id, ok=False, reason="template was deleted"))
                continue
            now_known = {k: v for k, v in known.get(message.customer_id, {}).items() if v is not None}
            variables = now_known | {k: v for k, v in message.variables.items() if v is not None}
            variables.setdefault("name", templates.DEFAULT_NAME)
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

    def _email(self, config: EmailConfig, messages: list[Outgoing], verdicts: queue.Verdicts) -> None:
        gate = asyncio.Semaphore(EMAIL_CONCURRENCY)

        async def one(message: Outgoing) -> Outcome:
            async with gate:
                return await send_email(self.settings, config, message)

        async def call() -> list[Outcome]:
            return list(await asyncio.gather(*(one(m) for m in messages)))

        verdicts.sending += [(m.id, None) for m in messages]
        verdicts.calls.append(call)

    async def _sms(
        self, session: AsyncSession, shop_id: str, messages: list[Outgoing], verdicts: queue.Verdicts
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


class Dispatcher(Sender):
    def __init__(self, db: Database, settings: MessagingSettings, name: str = "dispatcher") -> None:
        super().__init__(settings)
        self.db, self.name = db, name
        self.position: tuple[datetime, int] | None = None
        self.lease = timedelta(seconds=settings.send_lease_seconds)

    async def run(self, stop: asyncio.Event) -> None:
        recovered_at = 0.0
        recover_every = min(RECOVER_EVERY_SECONDS, self.lease.total_seconds() / 2)
        while not stop.is_set():
            try:
                if time.monotonic() - recovered_at > recover_every:
                    recovered_at = time.monotonic()
                    await self.recover()
                handled = await self.cycle()
            except Exception:  # a bad cycle must not stop sending; its claim rolled back
                log.exception("dispatch_cycle_failed")
                handled = 0
            if handled < self.settings.dispatch_batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.settings.dispatch_seconds)
        await self.aclose()

    async def cycle(self) -> int:
        """One claim, check and render (committed, with SMS and e-mail marked `sending`), then the vendor
        calls outside any transaction, then their outcomes. Returns how many messages it handled."""
        verdicts = queue.Verdicts()
        async with self.db.transaction() as session:
            now = clock.now()
            limit = self.settings.dispatch_batch
            if self.position is None:
                rows = (await session.execute(queue.CLAIM_FROM_START, {"now": now, "limit": limit})).all()
            else:
                after_time, after_id = self.position
                params = {"now": now, "limit": limit, "after_time": after_time, "after_id": after_id}
                rows = (await session.execute(queue.CLAIM_AFTER, params)).all()
            if len(rows) < limit:
                self.position = None
            if not rows:
                return 0
            if len(rows) == limit:
                self.position = (rows[-1][0], rows[-1][1])
            claimed = [queue.Claimed(*row[1:]) for row in rows]
            by_shop: dict[str, list[queue.Claimed]] = defaultdict(list)
            for message in claimed:
                by_shop[message.shop_id].append(message)
            for shop_id, messages in by_shop.items():
                await self._shop(session, shop_id, messages, now, verdicts)
            await queue.record(session, verdicts, now, self.settings.send_max_attempts)
            await queue.mark_sending(session, verdicts, now + self.lease)
        if verdicts.calls:
            failpoints.hit(f"{self.name}.before_vendor_calls")
            outcomes = [o for call in verdicts.calls for o in await call()]
            failpoints.hit(f"{self.name}.after_vendor_calls")
            sent = queue.Verdicts(rendered=verdicts.rendered)
            for outcome in outcomes:
                _file(sent, outcome)
            async with self.db.transaction() as session:
                await queue.record(
                    session, sent, clock.now(), self.settings.send_max_attempts, in_flight=True
                )
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
                day = lease_end - self.lease
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
                    {"ids": sent, "lease": self.lease},
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
            # A report kept while its message was `sending` whose answer was recorded by a transaction
            # that could not see it yet (both committed at once) is applied here.
            await deliveries.apply_early_reports(session)
            return len(sent) + len(again)


def _file(verdicts: queue.Verdicts, outcome: Outcome) -> None:
    if outcome.ok:
        verdicts.sent.append(outcome)
    elif outcome.retry:
        verdicts.retry.append(outcome)
    else:
        verdicts.failed.append(outcome)


def _contact_word(channel: str) -> str:
    return {"sms": "mobile number", "email": "e-mail address"}.get(channel, "recipient")
