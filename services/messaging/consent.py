"""Consent: a buyer's opt-out per channel, however it arrives — the shop's API, an SMS reply of
退订/TD, an e-mail's one-click unsubscribe. It is honoured at send time, so a message queued before the
opt-out is suppressed too. Every change is announced (`consent.changed`) for the customer profile."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlencode

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.contracts.envelope import event_key
from laoke.contracts.messaging import CONSENT_CHANGED, ConsentChangedPayload
from laoke.contracts.topics import Topic
from laoke.kit import clock
from laoke.kit.outbox import Outbox
from services.messaging.models import Consent
from services.messaging.settings import MessagingSettings

# Replies that mean "stop texting me": the carriers' convention (TD = 退订) and its common variants.
SMS_STOP_WORDS = frozenset({"td", "t", "退订", "退", "取消", "unsubscribe", "stop", "n"})


def wants_out(reply: str) -> bool:
    return reply.strip().strip("。.!！ ").lower() in SMS_STOP_WORDS


def _token(settings: MessagingSettings, shop_id: str, customer_id: str, channel: str) -> str:
    message = f"unsubscribe\x1f{shop_id}\x1f{customer_id}\x1f{channel}".encode()
    return hmac.new(settings.internal_secret.encode(), message, hashlib.sha256).hexdigest()[:32]


def sms_callback_url(settings: MessagingSettings, shop_id: str, provider: str = "aliyun") -> str:
    """Where the shop's SMS vendor pushes delivery reports and replies (Aliyun: HTTP batch push;
    Tencent: 回执 and 回复 callbacks), each vendor to its own path."""
    kind = f"{provider}sms"
    token = _token(settings, shop_id, "-", kind)
    return f"{settings.public_url.rstrip('/')}/api/v1/webhooks/{kind}/{shop_id}?t={token}"


def sms_callback_valid(
    settings: MessagingSettings, shop_id: str, token: str, provider: str = "aliyun"
) -> bool:
    return hmac.compare_digest(_token(settings, shop_id, "-", f"{provider}sms"), token)


def unsubscribe_url(settings: MessagingSettings, shop_id: str, customer_id: str, channel: str) -> str:
    query = urlencode({"c": customer_id, "ch": channel, "t": _token(settings, shop_id, customer_id, channel)})
    return f"{settings.public_url.rstrip('/')}/api/v1/webhooks/unsubscribe/{shop_id}?{query}"


def token_valid(
    settings: MessagingSettings, shop_id: str, customer_id: str, channel: str, token: str
) -> bool:
    return hmac.compare_digest(_token(settings, shop_id, customer_id, channel), token)


async def set_consent(
    session: AsyncSession,
    outbox: Outbox,
    shop_id: str,
    customer_id: str,
    channel: str,
    subscribed: bool,
    source: str,
) -> bool:
    """Record the choice; returns whether it changed anything (an event only then)."""
    current = await session.get(Consent, (shop_id, customer_id, channel))
    if current is not None and current.subscribed == subscribed:
        return False
    if current is None and subscribed:
        return False  # no row already means subscribed
    now = clock.now()
    await session.execute(
        insert(Consent)
        .values(
            shop_id=shop_id,
            customer_id=customer_id,
            channel=channel,
            subscribed=subscribed,
            source=source,
            updated_at=now,
        )
        .on_conflict_do_update(
            index_elements=["shop_id", "customer_id", "channel"],
            set_={"subscribed": subscribed, "source": source, "updated_at": now},
        )
    )
    await outbox.add(
        session,
        topic=Topic.MESSAGING,
        event_type=CONSENT_CHANGED,
        shop_id=shop_id,
        key=event_key(shop_id, customer_id),
        payload=ConsentChangedPayload(
            customer_id=customer_id, channel=channel, subscribed=subscribed, source=source
        ).model_dump(mode="json"),
    )
    return True
