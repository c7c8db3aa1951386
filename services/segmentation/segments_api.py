"""Dynamic segments (rules over profiles), tags, and the customer list."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.dialects.postgresql import insert

from laoke.kit import clock
from laoke.kit.db import SessionDep
from laoke.kit.errors import ERROR_RESPONSES, NotFound
from laoke.kit.ids import new_id
from laoke.kit.service import CallerDep
from services.segmentation.models import CustomerTag, Profile, Segment
from services.segmentation.rfm import Lifecycle, RfmClass
from services.segmentation.rules import compile_rule
from services.segmentation.schemas import CustomerOut
from services.segmentation.views import customer_out, tags_of

segments = APIRouter(prefix="/api/v1/segments", tags=["segments"], responses=ERROR_RESPONSES)
customers = APIRouter(prefix="/api/v1/customers", tags=["customers"], responses=ERROR_RESPONSES)

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
    size: int = Field(description="Customers matching the rule now")
    updated_at: Any


class SegmentList(BaseModel):
    items: list[SegmentOut]


class CustomerPage(BaseModel):
    items: list[CustomerOut]
    next_cursor: str | None


class TagsIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"tags": ["VIP", "爱喝绿茶"]}]})

    tags: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(min_length=1, max_length=50)


class TagIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"tag": "双11召回"}]})

    tag: str = Field(min_length=1, max_length=64)


class Tagged(BaseModel):
    tagged: int


async def _count(session: SessionDep, condition: ColumnElement[bool]) -> int:
    return int(await session.scalar(select(func.count()).select_from(Profile).where(condition)) or 0)


async def _page(
    session: SessionDep, shop_id: str, condition: ColumnElement[bool], limit: int, cursor: str | None
) -> CustomerPage:
    query = select(Profile).where(condition)
    if cursor:
        query = query.where(Profile.customer_id > cursor)
    rows = list(await session.scalars(query.order_by(Profile.customer_id).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    tags = await tags_of(session, shop_id, [r.customer_id for r in rows])
    return CustomerPage(
        items=[customer_out(r, tags.get(r.customer_id, [])) for r in rows],
        next_cursor=rows[-1].customer_id if more and rows else None,
    )


async def _load(session: SessionDep, shop_id: str, segment_id: str) -> Segment:
    segment = await session.scalar(
        select(Segment).where(Segment.shop_id == shop_id, Segment.id == segment_id)
    )
    if segment is None:
        raise NotFound(f"segment {segment_id} not found")
    return segment


async def _segment_out(session: SessionDep, segment: Segment) -> SegmentOut:
    size = await _count(session, compile_rule(segment.rule, segment.shop_id, clock.now()))
    return SegmentOut(
        id=segment.id, name=segment.name, rule=segment.rule, size=size, updated_at=segment.updated_at
    )


@segments.post(
    "/preview",
    response_model=Preview,
    summary="How many customers a rule matches, with a sample",
    description="Fields: lifecycle, rfm_segment, r_score, f_score, m_score, recency_days, orders_count, "
    "total_spent, avg_order_value (yuan), first_order_at, last_order_at, tags. Operators: eq, ne, gt, gte, "
    "lt, lte, between, in, not_in (numbers), before, after, within_days, not_within_days (times), has, "
    "has_any, has_all, has_none (tags). Unknown fields, operators or mistyped values are 422 naming where.",
)
async def preview(body: RuleIn, caller: CallerDep, session: SessionDep) -> Preview:
    condition = compile_rule(body.rule, caller.shop_id, clock.now())
    page = await _page(session, caller.shop_id, condition, SAMPLE_SIZE, None)
    return Preview(size=await _count(session, condition), sample=page.items)


@segments.post("", response_model=SegmentOut, status_code=status.HTTP_201_CREATED, summary="Save a segment")
async def create_segment(body: SegmentIn, caller: CallerDep, session: SessionDep) -> SegmentOut:
    compile_rule(body.rule, caller.shop_id, clock.now())  # refuse a bad rule before storing it
    segment = Segment(id=new_id("seg"), shop_id=caller.shop_id, name=body.name, rule=body.rule)
    session.add(segment)
    await session.flush()
    await session.refresh(segment)
    return await _segment_out(session, segment)


@segments.get("", response_model=SegmentList, summary="The shop's segments")
async def list_segments(caller: CallerDep, session: SessionDep) -> SegmentList:
    rows = await session.scalars(
        select(Segment).where(Segment.shop_id == caller.shop_id).order_by(Segment.created_at)
    )
    return SegmentList(items=[await _segment_out(session, s) for s in rows])


@segments.get("/{segment_id}", response_model=SegmentOut, summary="A segment and its current size")
async def get_segment(segment_id: str, caller: CallerDep, session: SessionDep) -> SegmentOut:
    return await _segment_out(session, await _load(session, caller.shop_id, segment_id))


@segments.get("/{segment_id}/members", response_model=CustomerPage, summary="Customers in a segment now")
async def segment_members(
    segment_id: str,
    caller: CallerDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> CustomerPage:
    segment = await _load(session, caller.shop_id, segment_id)
    return await _page(
        session, caller.shop_id, compile_rule(segment.rule, caller.shop_id, clock.now()), limit, cursor
    )


@segments.delete(
    "/{segment_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete a segment",
)
async def delete_segment(segment_id: str, caller: CallerDep, session: SessionDep) -> Response:
    await _load(session, caller.shop_id, segment_id)
    await session.execute(delete(Segment).where(Segment.shop_id == caller.shop_id, Segment.id == segment_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@segments.post("/{segment_id}/tags", response_model=Tagged, summary="Tag every customer of a segment")
async def tag_segment(segment_id: str, body: TagIn, caller: CallerDep, session: SessionDep) -> Tagged:
    segment = await _load(session, caller.shop_id, segment_id)
    members = select(Profile.shop_id, Profile.customer_id, func.cast(body.tag, CustomerTag.tag.type)).where(
        compile_rule(segment.rule, caller.shop_id, clock.now())
    )
    result = await session.execute(
        insert(CustomerTag).from_select(["shop_id", "customer_id", "tag"], members).on_conflict_do_nothing()
    )
    return Tagged(tagged=result.rowcount or 0)  # type: ignore[attr-defined]


@customers.get(
    "",
    response_model=CustomerPage,
    summary="List customers",
    description="Filter by lifecycle, RFM class, tag or segment; ordered by customer id with a cursor.",
)
async def list_customers(
    caller: CallerDep,
    session: SessionDep,
    lifecycle: Lifecycle | None = None,
    rfm_segment: RfmClass | None = None,
    tag: Annotated[str | None, Query(max_length=64)] = None,
    segment_id: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> CustomerPage:
    rule: list[dict[str, Any]] = []
    if lifecycle is not None:
        rule.append({"field": "lifecycle", "op": "eq", "value": lifecycle.value})
    if rfm_segment is not None:
        rule.append({"field": "rfm_segment", "op": "eq", "value": rfm_segment.value})
    if tag is not None:
        rule.append({"field": "tags", "op": "has", "value": tag})
    if segment_id is not None:
        rule.append((await _load(session, caller.shop_id, segment_id)).rule)
    condition = (
        compile_rule({"all": rule}, caller.shop_id, clock.now())
        if rule
        else Profile.shop_id == caller.shop_id
    )
    return await _page(session, caller.shop_id, condition, limit, cursor)


@customers.post("/{customer_id}/tags", response_model=list[str], summary="Add tags to a customer")
async def add_tags(customer_id: str, body: TagsIn, caller: CallerDep, session: SessionDep) -> list[str]:
    await _require_customer(session, caller.shop_id, customer_id)
    await session.execute(
        insert(CustomerTag)
        .values([{"shop_id": caller.shop_id, "customer_id": customer_id, "tag": t} for t in body.tags])
        .on_conflict_do_nothing()
    )
    return (await tags_of(session, caller.shop_id, [customer_id])).get(customer_id, [])


@customers.delete(
    "/{customer_id}/tags/{tag}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Remove a tag from a customer",
)
async def remove_tag(customer_id: str, tag: str, caller: CallerDep, session: SessionDep) -> Response:
    await _require_customer(session, caller.shop_id, customer_id)
    await session.execute(
        delete(CustomerTag).where(
            CustomerTag.shop_id == caller.shop_id,
            CustomerTag.customer_id == customer_id,
            CustomerTag.tag == tag,
        )
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _require_customer(session: SessionDep, shop_id: str, customer_id: str) -> None:
    found = await session.scalar(
        select(Profile.customer_id).where(Profile.shop_id == shop_id, Profile.customer_id == customer_id)
    )
    if found is None:
        raise NotFound(f"customer {customer_id} not found")
