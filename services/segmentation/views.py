"""Profiles as the API shows them: personal data masked unless the caller may see it."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.kit import clock
from laoke.kit.money import from_fen
from laoke.kit.pii import mask_email, mask_name, mask_phone
from services.segmentation.models import CustomerTag, Profile
from services.segmentation.rfm_config import CHINESE, RfmClass
from services.segmentation.rules import SHOP_TIME_ZONE
from services.segmentation.schemas import CustomerOut


async def tags_of(session: AsyncSession, shop_id: str, customer_ids: list[str]) -> dict[str, list[str]]:
    if not customer_ids:
        return {}
    rows = await session.execute(
        select(CustomerTag.customer_id, CustomerTag.tag)
        .where(CustomerTag.shop_id == shop_id, CustomerTag.customer_id.in_(customer_ids))
        .order_by(CustomerTag.customer_id, CustomerTag.tag)
    )
    tags: dict[str, list[str]] = defaultdict(list)
    for customer_id, tag in rows:
        tags[customer_id].append(tag)
    return tags


def _age(profile: Profile, now: datetime) -> int | None:
    if profile.birthday is None:
        return None
    today = now.astimezone(SHOP_TIME_ZONE).date()
    born = profile.birthday
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def customer_fields(profile: Profile, tags: list[str], *, pii: bool) -> dict[str, object]:
    spent = from_fen(profile.total_spent_fen)
    average = (spent / profile.orders_count).quantize(Decimal("0.01")) if profile.orders_count else Decimal(0)
    return {
        "customer_id": profile.customer_id,
        "nick": profile.nick,
        "name": profile.name if pii else mask_name(profile.name),
        "gender": profile.gender,
        "birthday": profile.birthday if pii else None,
        "birthday_month": profile.birthday.month if profile.birthday else None,
        "age": _age(profile, clock.now()),
        "mobile": profile.mobile if pii else mask_phone(profile.mobile),
        "email": profile.email if pii else mask_email(profile.email),
        "province": profile.province,
        "city": profile.city,
        "channels": profile.channels or [],
        "external_ids": profile.external_ids or {},
        "orders_count": profile.orders_count,
        "total_spent": spent,
        "average_order_value": average,
        "refunds_count": profile.refunds_count or 0,
        "refunded": from_fen(profile.refunded_fen or 0),
        "first_order_at": profile.first_order_at,
        "last_order_at": profile.last_order_at,
        "favorites_count": profile.favorites_count or 0,
        "carts_count": profile.carts_count or 0,
        "last_seen_at": profile.last_seen_at,
        "lifecycle": profile.lifecycle,
        "r_score": profile.r_score,
        "f_score": profile.f_score,
        "m_score": profile.m_score,
        "rfm_segment": profile.rfm_segment,
        "rfm_segment_name": CHINESE.get(RfmClass(profile.rfm_segment)) if profile.rfm_segment else None,
        "scored_at": profile.scored_at,
        "tier": profile.tier,
        "tier_level": profile.tier_level,
        "points_balance": profile.points_balance or 0,
        "consent": profile.consent or {},
        "tags": tags,
        "attributes": profile.attributes or {},
        "p_alive": round(profile.p_alive, 4) if profile.p_alive is not None else None,
        "expected_purchases_90d": (
            round(profile.expected_purchases_90d, 4) if profile.expected_purchases_90d is not None else None
        ),
        "clv_365d": from_fen(profile.clv_365d_fen) if profile.clv_365d_fen is not None else None,
    }


def customer_out(profile: Profile, tags: list[str], *, pii: bool = False) -> CustomerOut:
    return CustomerOut(**customer_fields(profile, tags, pii=pii))  # type: ignore[arg-type]
