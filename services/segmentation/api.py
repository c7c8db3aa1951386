"""HTTP API of the segmentation service: one customer's profile (lists, tags and segments are in
segments_api, RFM in rfm_api)."""

from __future__ import annotations

from fastapi import APIRouter

from laoke.kit.db import SessionDep
from laoke.kit.errors import ERROR_RESPONSES, NotFound
from laoke.kit.service import CallerDep
from services.segmentation.repository import ProfileRepository
from services.segmentation.schemas import CustomerOut
from services.segmentation.views import customer_out, tags_of

router = APIRouter(prefix="/api/v1/customers", tags=["customers"], responses=ERROR_RESPONSES)


@router.get("/{customer_id}", response_model=CustomerOut, summary="A customer's profile")
async def get_customer(customer_id: str, caller: CallerDep, session: SessionDep) -> CustomerOut:
    profile = await ProfileRepository(session).get(caller.shop_id, customer_id)
    if profile is None:
        raise NotFound(f"customer {customer_id} not found")
    tags = await tags_of(session, caller.shop_id, [customer_id])
    return customer_out(profile, tags.get(customer_id, []))
