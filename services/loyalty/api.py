"""HTTP API of the loyalty service (reached through the gateway)."""

from __future__ import annotations

from fastapi import APIRouter

from laoke.kit.db import SessionDep
from laoke.kit.errors import ERROR_RESPONSES, NotFound
from laoke.kit.service import CallerDep
from services.loyalty.repository import MemberRepository
from services.loyalty.schemas import MemberOut

router = APIRouter(prefix="/api/v1/loyalty", tags=["loyalty"], responses=ERROR_RESPONSES)


@router.get(
    "/members/{customer_id}",
    response_model=MemberOut,
    summary="A member's points",
    description="A member exists for every customer with a completed order or a manual points change.",
)
async def get_member(customer_id: str, caller: CallerDep, session: SessionDep) -> MemberOut:
    member = await MemberRepository(session).get(caller.shop_id, customer_id)
    if member is None:
        raise NotFound(f"member {customer_id} not found")
    return MemberOut(
        customer_id=member.customer_id,
        points_available=member.points_balance,
        lifetime_earned=member.lifetime_earned,
        member_since=member.created_at,
        updated_at=member.updated_at,
    )
