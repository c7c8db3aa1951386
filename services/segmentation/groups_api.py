"""Static groups (分组): lists of customers the shop keeps by hand, or copies from a segment once."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import and_, delete, exists, func, literal, select
from sqlalchemy.dialects.postgresql import insert

from laoke.kit import clock
from laoke.kit.db import SessionDep
from laoke.kit.errors import ERROR_RESPONSES, Conflict, NotFound, Unprocessable
from laoke.kit.ids import new_id
from laoke.kit.patches import refuse_nulls
from laoke.kit.service import CallerDep, OutboxDep
from services.segmentation import segments
from services.segmentation.customers_api import CustomerPage, CustomerSort, page_of, require_profile
from services.segmentation.models import Group, GroupMember, Profile, Segment, SegmentMember
from services.segmentation.rules import named_groups

router = APIRouter(prefix="/api/v1/groups", tags=["groups"], responses=ERROR_RESPONSES)

# Up to this many customers, memberships of their segments are updated one by one; a larger copy
# from a segment re-evaluates the shop's segments set-based.
_PER_CUSTOMER_LIMIT = 1000


class GroupIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "双11 VIP 回访", "description": "电话回访名单"}]},
    )

    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=1000)


class GroupPatch(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "双11 VIP 回访（已完成）"}]}
    )

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=1000, description="null clears it")

    @model_validator(mode="after")
    def _keeps_required(self) -> GroupPatch:
        refuse_nulls(self, "name")
        return self


class GroupOut(BaseModel):
    id: str = Field(examples=["grp_0c1e5b7d2a483f9a"])
    name: str
    description: str | None
    size: int
    created_at: datetime


class GroupList(BaseModel):
    items: list[GroupOut]


class MembersIn(BaseModel):
    """Either customer ids (all must exist, or nothing is added) or a segment whose current members are
    copied."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"customer_ids": ["cus_3f9a0c1e5b7d2a48"]}, {"segment_id": "seg_5d1f0c2b9a7e4c31"}]
        },
    )

    customer_ids: list[Annotated[str, Field(min_length=1, max_length=32)]] | None = Field(
        default=None, min_length=1, max_length=1000
    )
    segment_id: str | None = Field(default=None, max_length=32)

    @model_validator(mode="after")
    def _one_source(self) -> MembersIn:
        if (self.customer_ids is None) == (self.segment_id is None):
            raise ValueError("give either customer_ids or segment_id")
        return self


class Added(BaseModel):
    added: int = Field(description="Customers newly in the group (those already in it are not counted)")


async def _load(session: SessionDep, shop_id: str, group_id: str) -> Group:
    group = await session.scalar(select(Group).where(Group.shop_id == shop_id, Group.id == group_id))
    if group is None:
        raise NotFound(f"group {group_id} not found")
    return group


async def _out(session: SessionDep, group: Group) -> GroupOut:
    size = await session.scalar(
        select(func.count()).where(GroupMember.shop_id == group.shop_id, GroupMember.group_id == group.id)
    )
    return GroupOut(
        id=group.id,
        name=group.name,
        description=group.description,
        size=size or 0,
        created_at=group.created_at,
    )


@router.post("", response_model=GroupOut, status_code=status.HTTP_201_CREATED, summary="Create a group")
async def create_group(body: GroupIn, caller: CallerDep, session: SessionDep) -> GroupOut:
    group = Group(id=new_id("grp"), shop_id=caller.shop_id, name=body.name, description=body.description)
    session.add(group)
    await session.flush()
    await session.refresh(group)
    return await _out(session, group)


@router.get("", response_model=GroupList, summary="The shop's groups with their sizes")
async def list_groups(caller: CallerDep, session: SessionDep) -> GroupList:
    rows = await session.scalars(
        select(Group).where(Group.shop_id == caller.shop_id).order_by(Group.created_at)
    )
    return GroupList(items=[await _out(session, g) for g in rows])


@router.get("/{group_id}", response_model=GroupOut, summary="A group")
async def get_group(group_id: str, caller: CallerDep, session: SessionDep) -> GroupOut:
    return await _out(session, await _load(session, caller.shop_id, group_id))


@router.patch("/{group_id}", response_model=GroupOut, summary="Rename a group or change its description")
async def patch_group(group_id: str, body: GroupPatch, caller: CallerDep, session: SessionDep) -> GroupOut:
    group = await _load(session, caller.shop_id, group_id)
    for name, value in body.model_dump(exclude_unset=True).items():
        setattr(group, name, value)
    await session.flush()
    return await _out(session, group)


@router.delete(
    "/{group_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete a group (its customers stay)",
    description="409 while a segment's rule names the group: change the rule first.",
)
async def delete_group(group_id: str, caller: CallerDep, session: SessionDep) -> Response:
    await _load(session, caller.shop_id, group_id)
    # A segment whose rule names the group would silently match nobody from then on.
    using = [
        segment.name
        for segment in await session.scalars(
            select(Segment).where(Segment.shop_id == caller.shop_id).order_by(Segment.created_at)
        )
        if group_id in named_groups(segment.rule)
    ]
    if using:
        raise Conflict(
            f"group {group_id} is named by the rule of segment {', '.join(using)} (change the rule first)"
        )
    await session.execute(
        delete(GroupMember).where(GroupMember.shop_id == caller.shop_id, GroupMember.group_id == group_id)
    )
    await session.execute(delete(Group).where(Group.shop_id == caller.shop_id, Group.id == group_id))
    await segments.refresh_shop(session, caller.shop_id, clock.now())  # rules over this group
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{group_id}/members", response_model=Added, summary="Add customers, by id or from a segment")
async def add_members(
    group_id: str, body: MembersIn, caller: CallerDep, session: SessionDep, outbox: OutboxDep
) -> Added:
    shop_id = caller.shop_id
    await _load(session, shop_id, group_id)
    if body.customer_ids is not None:
        wanted = sorted(set(body.customer_ids))
        known = set(
            await session.scalars(
                select(Profile.customer_id).where(Profile.shop_id == shop_id, Profile.customer_id.in_(wanted))
            )
        )
        unknown = [c for c in wanted if c not in known]
        if unknown:
            raise Unprocessable(
                f"unknown customer ids: {', '.join(unknown[:10])}" + (" …" if len(unknown) > 10 else "")
            )
        source = select(literal(shop_id), literal(group_id), Profile.customer_id).where(
            Profile.shop_id == shop_id, Profile.customer_id.in_(wanted)
        )
    else:
        segment = await session.scalar(
            select(Segment.id).where(Segment.shop_id == shop_id, Segment.id == body.segment_id)
        )
        if segment is None:
            raise NotFound(f"segment {body.segment_id} not found")
        source = select(literal(shop_id), literal(group_id), SegmentMember.customer_id).where(
            SegmentMember.shop_id == shop_id, SegmentMember.segment_id == body.segment_id
        )
    added = list(
        await session.scalars(
            insert(GroupMember)
            .from_select(["shop_id", "group_id", "customer_id"], source)
            .on_conflict_do_nothing()
            .returning(GroupMember.customer_id)
        )
    )
    now = clock.now()
    if len(added) <= _PER_CUSTOMER_LIMIT:
        await segments.refresh_customers(session, outbox, shop_id, added, now)
    else:
        await segments.refresh_shop(session, shop_id, now)
    return Added(added=len(added))


@router.get("/{group_id}/members", response_model=CustomerPage, summary="Customers in a group")
async def group_members(
    group_id: str,
    caller: CallerDep,
    session: SessionDep,
    sort: Annotated[CustomerSort, Query(description="As for the customer list")] = CustomerSort.CUSTOMER_ID,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=128)] = None,
) -> CustomerPage:
    await _load(session, caller.shop_id, group_id)
    member = exists().where(
        GroupMember.shop_id == caller.shop_id,
        GroupMember.group_id == group_id,
        GroupMember.customer_id == Profile.customer_id,
    )
    return await page_of(
        session, caller.shop_id, and_(Profile.shop_id == caller.shop_id, member), limit, cursor, sort
    )


@router.delete(
    "/{group_id}/members/{customer_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Remove a customer from a group",
)
async def remove_member(
    group_id: str, customer_id: str, caller: CallerDep, session: SessionDep, outbox: OutboxDep
) -> Response:
    await _load(session, caller.shop_id, group_id)
    await require_profile(session, caller.shop_id, customer_id)
    await session.execute(
        delete(GroupMember).where(
            GroupMember.shop_id == caller.shop_id,
            GroupMember.group_id == group_id,
            GroupMember.customer_id == customer_id,
        )
    )
    await segments.refresh_customers(session, outbox, caller.shop_id, [customer_id], clock.now())
    return Response(status_code=status.HTTP_204_NO_CONTENT)
