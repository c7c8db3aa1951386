"""Coupons: templates, issuing codes to members, and redemption by the orders that use them."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta

import httpx
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.contracts.envelope import event_key
from laoke.contracts.loyalty import COUPON_ISSUED, COUPON_REDEEMED, CouponIssuedPayload, CouponRedeemedPayload
from laoke.contracts.orders import OrderEventPayload
from laoke.contracts.topics import Topic
from laoke.kit import clock
from laoke.kit.errors import Conflict, NotFound, ServiceUnavailable
from laoke.kit.internal_auth import sign
from laoke.kit.outbox import Outbox
from laoke.kit.settings import ServiceSettings
from services.loyalty.models import Coupon, CouponFlag, CouponTemplate

# No 0/O, 1/I/L: codes are read aloud and typed by buyers.
_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 10


class LimitReached(Conflict):
    code = "limit_reached"


def new_code() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(CODE_LENGTH))


async def load_template(
    session: AsyncSession, shop_id: str, template_id: str, *, lock: bool = False
) -> CouponTemplate:
    query = select(CouponTemplate).where(CouponTemplate.shop_id == shop_id, CouponTemplate.id == template_id)
    template = await session.scalar(query.with_for_update() if lock else query)
    if template is None:
        raise NotFound(f"coupon template {template_id} not found")
    return template


async def can_issue(session: AsyncSession, template: CouponTemplate, customer_id: str) -> bool:
    """Whether one more coupon of `template` (locked by the caller) can go to this customer now."""
    if template.valid_until is not None and template.valid_until <= clock.now():
        return False
    if template.total_limit is not None and template.issued_count >= template.total_limit:
        return False
    if template.per_customer_limit is None:
        return True
    held = await session.scalar(
        select(func.count()).where(
            Coupon.shop_id == template.shop_id,
            Coupon.template_id == template.id,
            Coupon.customer_id == customer_id,
        )
    )
    return (held or 0) < template.per_customer_limit


async def issue(
    session: AsyncSession,
    outbox: Outbox,
    template: CouponTemplate,
    customer_ids: Sequence[str],
    *,
    source: str = "issue",
    reference: str | None = None,
) -> tuple[dict[str, str], list[str]]:
    """Issue one coupon of `template` to each customer; returns ({customer: code}, customers skipped
    because of the per-customer limit). The template must be locked by the caller: the total limit is
    checked against its count and a partial issue is refused whole (`limit_reached`)."""
    now = clock.now()
    if template.valid_until is not None and template.valid_until <= now:
        raise Conflict(f"coupon template {template.id} expired at {template.valid_until.isoformat()}")
    wanted = list(dict.fromkeys(customer_ids))
    skipped: list[str] = []
    if template.per_customer_limit is not None and wanted:
        held: dict[str, int] = dict(
            (
                await session.execute(
                    select(Coupon.customer_id, func.count())
                    .where(
                        Coupon.shop_id == template.shop_id,
                        Coupon.template_id == template.id,
                        Coupon.customer_id.in_(wanted),
                    )
                    .group_by(Coupon.customer_id)
                )
            ).all()
        )
        skipped = [c for c in wanted if held.get(c, 0) >= template.per_customer_limit]
        wanted = [c for c in wanted if held.get(c, 0) < template.per_customer_limit]
    if template.total_limit is not None and template.issued_count + len(wanted) > template.total_limit:
        raise LimitReached(
            f"template {template.id} may issue {template.total_limit - template.issued_count} more coupons, "
            f"{len(wanted)} asked"
        )
    expires_at = template.valid_until
    if expires_at is None and template.valid_days is not None:
        expires_at = now + timedelta(days=template.valid_days)
    issued: dict[str, str] = {}
    remaining = wanted
    while remaining:  # a code collision (about 1 in 10^14) just draws again
        rows = [
            {
                "shop_id": template.shop_id,
                "code": new_code(),
                "template_id": template.id,
                "customer_id": c,
                "source": source,
                "reference": reference,
                "issued_at": now,
                "expires_at": expires_at,
            }
            for c in remaining
        ]
        stored = await session.execute(
            insert(Coupon).values(rows).on_conflict_do_nothing().returning(Coupon.customer_id, Coupon.code)
        )
        issued.update({row.customer_id: row.code for row in stored})
        remaining = [c for c in remaining if c not in issued]
    template.issued_count += len(issued)
    for customer_id, code in issued.items():
        await outbox.add(
            session,
            topic=Topic.LOYALTY,
            event_type=COUPON_ISSUED,
            shop_id=template.shop_id,
            key=event_key(template.shop_id, customer_id),
            payload=CouponIssuedPayload(
                customer_id=customer_id, code=code, template_id=template.id, expires_at=expires_at
            ),
        )
    return issued, skipped


async def redeem_codes(session: AsyncSession, outbox: Outbox, shop_id: str, order: OrderEventPayload) -> None:
    """An order that names coupon codes redeems each once. A code already redeemed by another order is
    flagged for the shop and not counted again; a first use against the template's rules is counted
    (the code is spent) and flagged; the same order seen again changes nothing."""
    for code in dict.fromkeys(c.strip().upper() for c in order.coupon_codes):
        coupon = await session.scalar(
            select(Coupon).where(Coupon.shop_id == shop_id, Coupon.code == code).with_for_update()
        )
        if coupon is None:
            continue  # a marketplace's own coupon, not one of ours
        if coupon.redeemed_order_id == order.order_id:
            continue
        if coupon.redeemed_order_id is not None:
            await _flag(session, coupon, order, ["reused"])
            continue
        template = await load_template(session, shop_id, coupon.template_id)
        await _flag(session, coupon, order, broken_rules(template, coupon, order))
        coupon.redeemed_order_id = order.order_id
        coupon.redeemed_at = clock.now()
        await session.execute(
            update(CouponTemplate)
            .where(CouponTemplate.shop_id == shop_id, CouponTemplate.id == coupon.template_id)
            .values(
                redeemed_count=CouponTemplate.redeemed_count + 1,
                revenue_fen=CouponTemplate.revenue_fen + order.paid_fen,
            )
        )
        await outbox.add(
            session,
            topic=Topic.LOYALTY,
            event_type=COUPON_REDEEMED,
            shop_id=shop_id,
            key=event_key(shop_id, coupon.customer_id),
            payload=CouponRedeemedPayload(
                customer_id=coupon.customer_id,
                code=code,
                template_id=coupon.template_id,
                order_id=order.order_id,
                order_paid_fen=order.paid_fen,
            ),
        )


def broken_rules(template: CouponTemplate, coupon: Coupon, order: OrderEventPayload) -> list[str]:
    """Which of the template's rules an order broke by using this coupon. Marketplaces report an order's
    total before the discount (Taobao's `total_fee`) or after it (Shopify's `total_price`); the coupon's
    saving is added back before the threshold is compared, so neither reading flags an honest order."""
    broken = []
    if coupon.expires_at is not None and order.placed_at > coupon.expires_at:
        broken.append("expired")
    if template.valid_from is not None and order.placed_at < template.valid_from:
        broken.append("not_yet_valid")
    if (
        template.threshold_fen is not None
        and order.total_fen + (template.amount_fen or 0) < template.threshold_fen
    ):
        broken.append("below_threshold")
    if order.customer_id != coupon.customer_id:
        broken.append("other_buyer")
    return broken


async def _flag(session: AsyncSession, coupon: Coupon, order: OrderEventPayload, reasons: list[str]) -> None:
    if not reasons:
        return
    await session.execute(
        insert(CouponFlag)
        .values(
            [
                {
                    "shop_id": coupon.shop_id,
                    "template_id": coupon.template_id,
                    "code": coupon.code,
                    "order_id": order.order_id,
                    "reason": reason,
                    "holder_id": coupon.customer_id,
                    "buyer_id": order.customer_id,
                }
                for reason in reasons
            ]
        )
        .on_conflict_do_nothing()
    )


async def segment_members(settings: ServiceSettings, shop_id: str, segment_id: str) -> list[str]:
    """Every customer in a segment now, read page by page from the segmentation API (internal
    credential). Unknown segment: 404; segmentation down: 503 (nothing is issued)."""
    members: list[str] = []
    cursor: str | None = None
    path = f"/api/v1/segments/{segment_id}/members"
    try:
        async with httpx.AsyncClient(base_url=settings.segmentation_url, timeout=30) as client:
            while True:
                params = {"limit": "200", **({"cursor": cursor} if cursor else {})}
                headers = sign(settings.internal_secret, method="GET", path=path, shop_id=shop_id)
                response = await client.get(path, params=params, headers=headers)
                if response.status_code == 404:
                    raise NotFound(f"segment {segment_id} not found")
                response.raise_for_status()
                page = response.json()
                members += [c["customer_id"] for c in page["items"]]
                cursor = page.get("next_cursor")
                if not cursor:
                    return members
    except httpx.HTTPError as exc:
        raise ServiceUnavailable(f"could not read segment {segment_id} from segmentation: {exc}") from exc


def expired(coupon: Coupon, now: datetime) -> bool:
    return coupon.expires_at is not None and coupon.expires_at <= now
