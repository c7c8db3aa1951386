"""Coupons that go out with messages (a campaign's or an automation's `coupon_template_id`), issued by
loyalty at send time, one per recipient. The message's source is the issue's reference, so asking again
after a crash returns the coupons already issued instead of issuing twice."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.kit.internal_auth import sign
from services.messaging.channels import Outcome
from services.messaging.settings import MessagingSettings

if TYPE_CHECKING:
    from services.messaging.queue import Claimed, Verdicts

ISSUE_PATH = "/internal/v1/coupons/issue"


async def attach(
    session: AsyncSession, settings: MessagingSettings, shop_id: str, ready: list[Claimed], verdicts: Verdicts
) -> list[Claimed]:
    """Give each message that wants a coupon its code; returns the messages that can go out now."""
    wanting: dict[tuple[str, str], list[Claimed]] = defaultdict(list)
    for message in ready:
        if message.coupon_template_id and not message.coupon_code:
            wanting[(message.coupon_template_id, message.source)].append(message)
    if not wanting:
        return ready
    held: set[int] = set()
    async with httpx.AsyncClient(base_url=settings.loyalty_url, timeout=30) as client:
        for (template_id, reference), messages in wanting.items():
            body = {
                "template_id": template_id,
                "reference": reference,
                "customer_ids": sorted({m.customer_id for m in messages}),
            }
            headers = sign(settings.internal_secret, method="POST", path=ISSUE_PATH, shop_id=shop_id)
            try:
                response = await client.post(ISSUE_PATH, json=body, headers=headers)
            except httpx.HTTPError as exc:
                reason = f"loyalty unreachable for the coupon: {type(exc).__name__}"
                verdicts.retry += [Outcome(m.id, ok=False, retry=True, reason=reason) for m in messages]
                held.update(m.id for m in messages)
                continue
            if response.status_code >= 500:
                reason = f"loyalty answered {response.status_code} for the coupon"
                verdicts.retry += [Outcome(m.id, ok=False, retry=True, reason=reason) for m in messages]
                held.update(m.id for m in messages)
                continue
            if response.status_code != 200:
                detail = response.json().get("detail", response.text) if response.content else ""
                reason = f"coupon not issued: {detail}"[:300]
                verdicts.failed += [Outcome(m.id, ok=False, reason=reason) for m in messages]
                held.update(m.id for m in messages)
                continue
            codes: dict[str, str] = response.json()["codes"]
            for message in messages:
                code = codes.get(message.customer_id)
                if code is None:
                    reason = "coupon not issued: not a member, or at the template's per-customer limit"
                    verdicts.failed.append(Outcome(message.id, ok=False, reason=reason))
                    held.add(message.id)
                else:
                    message.coupon_code = code
                    verdicts.codes[message.id] = code
    return [m for m in ready if m.id not in held]
