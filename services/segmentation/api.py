"""HTTP API of the segmentation service (reached through the gateway)."""

from __future__ import annotations

from decimal import Decimal

from fastapi import APIRouter

from laoke.kit.db import SessionDep
from laoke.kit.errors import ERROR_RESPONSES, NotFound
from laoke.kit.money import from_fen
from laoke.kit.service import CallerDep
from services.segmentation.repository import ProfileRepository
from services.segmentation.rfm import CHINESE, RfmClass
from services.segmentation.schemas import CustomerOut

router = APIRouter(prefix="/api/v1/customers", tags=["customers"], responses=ERROR_RESPONSES)


@router.get("/{customer_id}", response_model=CustomerOut, summary="A customer's profile")
async def get_customer(customer_id: str, caller: CallerDep, session: SessionDep) -> CustomerOut:
    profile = await ProfileRepository(session).get(caller.shop_id, customer_id)
    if profile is None:
        raise NotFound(f"customer {customer_id} not found")
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
    )
