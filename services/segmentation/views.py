"""Profiles as the API shows them."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.kit.money import from_fen
from services.segmentation.models import CustomerTag, Profile
from services.segmentation.rfm import CHINESE, RfmClass
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


def customer_out(profile: Profile, tags: list[str]) -> CustomerOut:
    spent = from_fen(profile.total_spent_fen)
    average = (spent / profile.orders_count).quantize(Decimal("0.01")) if profile.orders_count else Decimal(0)
    return CustomerOut(
        customer_id=profile.customer_id,
        orders_count=profile.orders_count,
        total_spent=spent,
        average_order_value=average,
        first_order_at=profile.first_order_at,
        last_order_at=profile.last_order_at,
        lifecycle=profile.lifecycle,
        r_score=profile.r_score,
        f_score=profile.f_score,
        m_score=profile.m_score,
        rfm_segment=profile.rfm_segment,
        rfm_segment_name=CHINESE.get(RfmClass(profile.rfm_segment)) if profile.rfm_segment else None,
        scored_at=profile.scored_at,
        tags=tags,
        p_alive=round(profile.p_alive, 4) if profile.p_alive is not None else None,
        expected_purchases_90d=(
            round(profile.expected_purchases_90d, 4) if profile.expected_purchases_90d is not None else None
        ),
        clv_365d=from_fen(profile.clv_365d_fen) if profile.clv_365d_fen is not None else None,
    )
