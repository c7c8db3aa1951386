"""Feeds other services read with the internal credential (not routed by the gateway)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import select

from laoke.kit.bulk import csv_feed
from laoke.kit.db import SessionDep
from laoke.kit.errors import NotFound
from laoke.kit.service import CallerDep
from services.segmentation.models import Segment

internal = APIRouter(prefix="/internal/v1", tags=["internal"], include_in_schema=False)

AUDIENCE_COLUMNS = "customer_id,name,mobile,email,tier,points"


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
