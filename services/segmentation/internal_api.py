"""Feeds other services read with the internal credential (not routed by the gateway)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy import select

from laoke.kit.bulk import csv_feed
from laoke.kit.db import SessionDep
from laoke.kit.errors import NotFound
from laoke.kit.service import CallerDep
from services.segmentation.handlers import MERGES
from services.segmentation.models import Profile, Segment, SegmentMember

internal = APIRouter(prefix="/internal/v1", tags=["internal"], include_in_schema=False)

AUDIENCE_COLUMNS = "customer_id,name,mobile,email,tier,points"


class CustomerFacts(BaseModel):
    known: bool = Field(description="Segmentation has a profile of this customer")
    mobile: str | None = None
    in_segment: bool | None = Field(default=None, description="Asked with `segment_id` only")


@internal.get("/customers/{customer_id}/facts", response_model=CustomerFacts)
async def customer_facts(
    customer_id: Annotated[str, Path(max_length=32)],
    caller: CallerDep,
    session: SessionDep,
    segment_id: Annotated[str | None, Query(max_length=32)] = None,
) -> CustomerFacts:
    """What loyalty's activities ask before they pay: is the customer in a segment (eligibility), and
    their mobile (a referral by the inviter's own phone is refused)."""
    customer_id = await MERGES.surviving(session, caller.shop_id, customer_id)
    mobile = await session.scalar(
        select(Profile.mobile).where(Profile.shop_id == caller.shop_id, Profile.customer_id == customer_id)
    )
    known = await session.scalar(
        select(Profile.customer_id).where(
            Profile.shop_id == caller.shop_id, Profile.customer_id == customer_id
        )
    )
    in_segment = None
    if segment_id is not None:
        found = await session.scalar(
            select(Segment.id).where(Segment.shop_id == caller.shop_id, Segment.id == segment_id)
        )
        if found is None:
            raise NotFound(f"segment {segment_id} not found")
        in_segment = (
            await session.scalar(
                select(SegmentMember.customer_id).where(
                    SegmentMember.shop_id == caller.shop_id,
                    SegmentMember.segment_id == segment_id,
                    SegmentMember.customer_id == customer_id,
                )
            )
            is not None
        )
    return CustomerFacts(known=known is not None, mobile=mobile, in_segment=in_segment)


@internal.get("/segments/{segment_id}/audience.csv")
async def segment_audience(
    segment_id: Annotated[str, Path(max_length=32)], caller: CallerDep, session: SessionDep, request: Request
) -> StreamingResponse:
    """Everyone in a segment now, with what a message needs to reach and greet them (a campaign's
    audience snapshot): `customer_id,name,mobile,email,tier,points`."""
    found = await session.scalar(
        select(Segment.id).where(Segment.shop_id == caller.shop_id, Segment.id == segment_id)
    )
    if found is None:
        raise NotFound(f"segment {segment_id} not found")
    query = (
        "SELECT p.customer_id, coalesce(p.name, p.nick) AS name, p.mobile, p.email, p.tier, "
        "p.points_balance AS points FROM segmentation.segment_members s "
        "JOIN segmentation.profiles p ON p.shop_id = s.shop_id AND p.customer_id = s.customer_id "
        "WHERE s.shop_id = $1 AND s.segment_id = $2"
    )
    return csv_feed(request.app.state.db, query, caller.shop_id, segment_id)
