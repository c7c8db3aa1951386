"""Dynamic segments: rules over profiles, their live preview, their members, bulk tagging."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import ColumnElement, and_, delete, exists, func, select
from sqlalchemy.dialects.postgresql import insert

from laoke.kit import clock
from laoke.kit.db import SessionDep
from laoke.kit.errors import ERROR_RESPONSES, NotFound
from laoke.kit.ids import new_id
from laoke.kit.service import CallerDep
from services.segmentation.customers_api import CustomerPage, CustomerSort, page_of
from services.segmentation.models import CustomerTag, Profile, Segment, SegmentMember
from services.segmentation.rules import FIELDS, OPS, checked_rule
from services.segmentation.schemas import CustomerOut
from services.segmentation.segments import refresh_segment, refresh_shop

segments = APIRouter(prefix="/api/v1/segments", tags=["segments"], responses=ERROR_RESPONSES)

RULE_EXAMPLE = {
    "all": [
        {"field": "lifecycle", "op": "eq", "value": "sleeping"},
        {"field": "total_spent", "op": "gte", "value": "500"},
        {"not": {"field": "tags", "op": "has", "value": "投诉过"}},
    ]
}
SAMPLE_SIZE = 10


class RuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"rule": RULE_EXAMPLE}]})

    rule: dict[str, Any] = Field(description="all / any / not over {field, op, value} conditions")


class SegmentIn(RuleIn):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "沉睡的老客", "rule": RULE_EXAMPLE}]}
    )

    name: str = Field(min_length=1, max_length=200)


class Preview(BaseModel):
    size: int
    sample: list[CustomerOut]


class SegmentOut(BaseModel):
    id: str = Field(examples=["seg_5d1f0c2b9a7e4c31"])
    name: str
    rule: dict[str, Any]
    size: int = Field(description="Members now (kept current on every event and on the schedule)")
    refreshed_at: datetime | None = Field(description="Last full re-evaluation of the rule")
    updated_at: datetime


class SegmentPatch(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "沉睡的高价值老客", "rule": RULE_EXAMPLE}]}
    )

    name: str | None = Field(default=None, min_length=1, max_length=200)
    rule: dict[str, Any] | None = None


class SegmentList(BaseModel):
    items: list[SegmentOut]


class TagIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"tag": "双11召回"}]})

    tag: str = Field(min_length=1, max_length=64)


class Tagged(BaseModel):
    tagged: int


async def _count(session: SessionDep, condition: ColumnElement[bool]) -> int:
    return int(await session.scalar(select(func.count()).select_from(Profile).where(condition)) or 0)


async def _load(session: SessionDep, shop_id: str, segment_id: str) -> Segment:
    segment = await session.scalar(
        select(Segment).where(Segment.shop_id == shop_id, Segment.id == segment_id)
    )
    if segment is None:
        raise NotFound(f"segment {segment_id} not found")
    return segment


def _segment_out(segment: Segment) -> SegmentOut:
    return SegmentOut(
        id=segment.id,
        name=segment.name,
        rule=segment.rule,
        size=segment.size,
        refreshed_at=segment.refreshed_at,
        updated_at=segment.updated_at,
    )


@segments.post(
    "/preview",
    response_model=Preview,
    summary="How many customers a rule matches, with a sample",
    description="Fields and their operators: "
    + "; ".join(f"{name} ({', '.join(sorted(OPS[field.kind]))})" for name, field in sorted(FIELDS.items()))
    + ". Money in yuan, times ISO-8601 with offset, behaviour fields take days or {days, item_id}. "
    "Unknown fields, operators or mistyped values are 422 naming where.",
)
async def preview(body: RuleIn, caller: CallerDep, session: SessionDep) -> Preview:
    condition = await checked_rule(session, body.rule, caller.shop_id, clock.now())
    page = await page_of(session, caller.shop_id, condition, SAMPLE_SIZE, None)
    return Preview(size=await _count(session, condition), sample=page.items)


@segments.post(
    "",
    response_model=SegmentOut,
    status_code=status.HTTP_201_CREATED,
    summary="Save a segment",
    description="Its members are computed at once (that starting set announces nothing); afterwards every "
    "customer entering or leaving it emits `segment.entered` / `segment.exited`.",
)
async def create_segment(body: SegmentIn, caller: CallerDep, session: SessionDep) -> SegmentOut:
    now = clock.now()
    await checked_rule(session, body.rule, caller.shop_id, now)  # refuse a bad rule before storing it
    segment = Segment(id=new_id("seg"), shop_id=caller.shop_id, name=body.name, rule=body.rule)
    session.add(segment)
    await session.flush()
    await refresh_segment(session, segment, now, announce=False)
    await session.refresh(segment)
    return _segment_out(segment)


@segments.get("", response_model=SegmentList, summary="The shop's segments")
async def list_segments(caller: CallerDep, session: SessionDep) -> SegmentList:
    rows = await session.scalars(
        select(Segment).where(Segment.shop_id == caller.shop_id).order_by(Segment.created_at)
    )
    return SegmentList(items=[_segment_out(s) for s in rows])


@segments.get("/{segment_id}", response_model=SegmentOut, summary="A segment and its current size")
async def get_segment(segment_id: str, caller: CallerDep, session: SessionDep) -> SegmentOut:
    return _segment_out(await _load(session, caller.shop_id, segment_id))


@segments.patch(
    "/{segment_id}",
    response_model=SegmentOut,
    summary="Rename a segment or change its rule",
    description="A new rule re-evaluates the members; who enters or leaves because of it is announced.",
)
async def patch_segment(
    segment_id: str, body: SegmentPatch, caller: CallerDep, session: SessionDep
) -> SegmentOut:
    segment = await _load(session, caller.shop_id, segment_id)
    now = clock.now()
    if body.rule is not None:
        await checked_rule(session, body.rule, caller.shop_id, now)
        segment.rule = body.rule
    if body.name is not None:
        segment.name = body.name
    segment.updated_at = now
    await session.flush()
    if body.rule is not None:
        await refresh_segment(session, segment, now)
    await session.refresh(segment)
    return _segment_out(segment)


@segments.get("/{segment_id}/members", response_model=CustomerPage, summary="Customers in a segment now")
async def segment_members(
    segment_id: str,
    caller: CallerDep,
    session: SessionDep,
    sort: Annotated[CustomerSort, Query(description="As for the customer list")] = CustomerSort.CUSTOMER_ID,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=128)] = None,
) -> CustomerPage:
    await _load(session, caller.shop_id, segment_id)
    member = exists().where(
        SegmentMember.shop_id == caller.shop_id,
        SegmentMember.segment_id == segment_id,
        SegmentMember.customer_id == Profile.customer_id,
    )
    return await page_of(
        session, caller.shop_id, and_(Profile.shop_id == caller.shop_id, member), limit, cursor, sort
    )


@segments.delete(
    "/{segment_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete a segment",
)
async def delete_segment(segment_id: str, caller: CallerDep, session: SessionDep) -> Response:
    await _load(session, caller.shop_id, segment_id)
    await session.execute(
        delete(SegmentMember).where(
            SegmentMember.shop_id == caller.shop_id, SegmentMember.segment_id == segment_id
        )
    )
    await session.execute(delete(Segment).where(Segment.shop_id == caller.shop_id, Segment.id == segment_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@segments.post("/{segment_id}/tags", response_model=Tagged, summary="Tag every customer of a segment")
async def tag_segment(segment_id: str, body: TagIn, caller: CallerDep, session: SessionDep) -> Tagged:
    await _load(session, caller.shop_id, segment_id)
    members = select(
        SegmentMember.shop_id, SegmentMember.customer_id, func.cast(body.tag, CustomerTag.tag.type)
    ).where(SegmentMember.shop_id == caller.shop_id, SegmentMember.segment_id == segment_id)
    result = await session.execute(
        insert(CustomerTag).from_select(["shop_id", "customer_id", "tag"], members).on_conflict_do_nothing()
    )
    await refresh_shop(session, caller.shop_id, clock.now())  # segments over tags move with it
    return Tagged(tagged=result.rowcount or 0)  # type: ignore[attr-defined]
