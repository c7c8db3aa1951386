"""Customers: the list with its filters and search, one profile, profile edits (会员信息登记) and tags."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import (
    ColumnElement,
    DateTime,
    and_,
    delete,
    exists,
    func,
    literal,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert

from laoke.contracts.envelope import event_key
from laoke.contracts.segmentation import PROFILE_COMPLETE_FIELDS, PROFILE_UPDATED, ProfileUpdatedPayload
from laoke.contracts.topics import Topic
from laoke.kit import clock
from laoke.kit.db import ReadSessionDep, SessionDep
from laoke.kit.errors import ERROR_RESPONSES, BadRequest, NotFound
from laoke.kit.ids import decode_cursor, encode_cursor
from laoke.kit.service import CallerDep, OutboxDep
from services.segmentation import segments
from services.segmentation.models import CustomerTag, GroupMember, Profile, Segment, SegmentMember
from services.segmentation.repository import ProfileRepository
from services.segmentation.rfm_config import Lifecycle, RfmClass
from services.segmentation.schemas import CustomerDetail, CustomerOut, CustomerPatch
from services.segmentation.views import customer_fields, customer_out, tags_of

router = APIRouter(prefix="/api/v1/customers", tags=["customers"], responses=ERROR_RESPONSES)


class CustomerPage(BaseModel):
    items: list[CustomerOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last")


class TagsIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"tags": ["VIP", "爱喝绿茶"]}]})

    tags: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(min_length=1, max_length=50)


class CustomerSort(StrEnum):
    """The order of a customer list: by id (stable, the default), or by spend, orders or last order,
    `-` for the largest or latest first."""

    CUSTOMER_ID = "customer_id"
    TOTAL_SPENT_DESC = "-total_spent"
    TOTAL_SPENT = "total_spent"
    ORDERS_COUNT_DESC = "-orders_count"
    ORDERS_COUNT = "orders_count"
    LAST_ORDER_AT_DESC = "-last_order_at"
    LAST_ORDER_AT = "last_order_at"


# Customers who never bought (no last order) come last whichever way the list runs by last order.
_NEVER_LATEST = datetime(1970, 1, 1, tzinfo=UTC)
_NEVER_EARLIEST = datetime(9999, 12, 31, tzinfo=UTC)


def _sort_key(sort: CustomerSort) -> tuple[ColumnElement[int] | ColumnElement[datetime], bool]:
    """The column a sort orders by (ties by customer id) and whether it runs largest first."""
    descending = sort.value.startswith("-")
    match sort.value.lstrip("-"):
        case "total_spent":
            return Profile.total_spent_fen, descending
        case "orders_count":
            return Profile.orders_count, descending
        case _:
            never = _NEVER_LATEST if descending else _NEVER_EARLIEST
            return func.coalesce(Profile.last_order_at, literal(never, DateTime(timezone=True))), descending


def _after(sort: CustomerSort, cursor: str) -> ColumnElement[bool]:
    """Where the page after `cursor` starts; 400 for a cursor this sort did not give out."""
    if sort is CustomerSort.CUSTOMER_ID:
        return Profile.customer_id > cursor
    key, descending = _sort_key(sort)
    parts = decode_cursor(cursor, 3)
    value: int | datetime | None = None
    if parts is not None and parts[0] == sort.value:
        try:
            value = datetime.fromisoformat(parts[1]) if "last_order_at" in sort.value else int(parts[1])
        except ValueError:
            value = None
    # Ours carry an offset and fit the column; anything else is not one of ours (and not a 500).
    if (isinstance(value, datetime) and value.tzinfo is None) or (
        isinstance(value, int) and abs(value) >= 2**63
    ):
        value = None
    if parts is None or value is None:
        raise BadRequest("invalid cursor; pass next_cursor from the previous page unchanged, same sort")
    last = tuple_(key, Profile.customer_id)
    seen = tuple_(literal(value, key.type), literal(parts[2], Profile.customer_id.type))
    return last < seen if descending else last > seen


def _cursor_of(sort: CustomerSort, profile: Profile) -> str:
    if sort is CustomerSort.CUSTOMER_ID:
        return profile.customer_id
    match sort.value.lstrip("-"):
        case "total_spent":
            value = str(profile.total_spent_fen)
        case "orders_count":
            value = str(profile.orders_count)
        case _:
            never = _NEVER_LATEST if sort.value.startswith("-") else _NEVER_EARLIEST
            value = (profile.last_order_at or never).isoformat()
    return encode_cursor(sort.value, value, profile.customer_id)


async def page_of(
    session: SessionDep,
    shop_id: str,
    condition: ColumnElement[bool],
    limit: int,
    cursor: str | None,
    sort: CustomerSort = CustomerSort.CUSTOMER_ID,
) -> CustomerPage:
    """One page of customers matching `condition` in the order `sort` asks; contact data masked (a list
    view). Keyset pages: ties are broken by customer id, and the cursor carries both."""
    query = select(Profile).where(condition)
    if cursor:
        query = query.where(_after(sort, cursor))
    if sort is CustomerSort.CUSTOMER_ID:
        order = [Profile.customer_id]
    else:
        key, descending = _sort_key(sort)
        order = [key.desc(), Profile.customer_id.desc()] if descending else [key, Profile.customer_id]
    rows = list(await session.scalars(query.order_by(*order).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    tags = await tags_of(session, shop_id, [r.customer_id for r in rows])
    return CustomerPage(
        items=[customer_out(r, tags.get(r.customer_id, [])) for r in rows],
        next_cursor=_cursor_of(sort, rows[-1]) if more and rows else None,
    )


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _search(q: str) -> ColumnElement[bool]:
    """Digits search the mobile (its start, or its last four digits as buyers quote them); anything
    else searches name and nick."""
    digits = q.replace(" ", "").replace("-", "")
    if digits.isdigit():
        return or_(Profile.mobile.like(f"{digits}%"), Profile.mobile.like(f"%{digits}"))
    pattern = f"%{_like(q)}%"
    return or_(Profile.name.ilike(pattern), Profile.nick.ilike(pattern))


@router.get(
    "",
    response_model=CustomerPage,
    summary="List and search customers",
    description="Filters combine with AND. `q` searches name and nick (substring) or, when it is digits, "
    "the mobile (leading digits or the last four). Ordered by customer id unless `sort` asks for spend, "
    "orders or last order (`-` first for the largest or latest first; customers who never bought come "
    "last by last order); follow `next_cursor` with the same filters and sort.",
)
async def list_customers(
    caller: CallerDep,
    session: ReadSessionDep,
    lifecycle: Lifecycle | None = None,
    rfm_segment: RfmClass | None = None,
    tier: Annotated[str | None, Query(max_length=64, description="Tier name, e.g. 金卡")] = None,
    tag: Annotated[str | None, Query(max_length=64)] = None,
    group_id: Annotated[str | None, Query(max_length=32)] = None,
    segment_id: Annotated[str | None, Query(max_length=32)] = None,
    q: Annotated[str | None, Query(min_length=1, max_length=64, examples=["8000"])] = None,
    sort: Annotated[CustomerSort, Query(examples=["-total_spent"])] = CustomerSort.CUSTOMER_ID,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=128)] = None,
) -> CustomerPage:
    shop_id = caller.shop_id
    conditions: list[ColumnElement[bool]] = [Profile.shop_id == shop_id]
    if lifecycle is not None:
        conditions.append(Profile.lifecycle == lifecycle.value)
    if rfm_segment is not None:
        conditions.append(Profile.rfm_segment == rfm_segment.value)
    if tier is not None:
        conditions.append(Profile.tier == tier)
    if tag is not None:
        conditions.append(
            exists().where(
                CustomerTag.shop_id == shop_id,
                CustomerTag.customer_id == Profile.customer_id,
                CustomerTag.tag == tag,
            )
        )
    if group_id is not None:
        conditions.append(
            exists().where(
                GroupMember.shop_id == shop_id,
                GroupMember.group_id == group_id,
                GroupMember.customer_id == Profile.customer_id,
            )
        )
    if segment_id is not None:
        found = await session.scalar(
            select(Segment.id).where(Segment.shop_id == shop_id, Segment.id == segment_id)
        )
        if found is None:
            raise NotFound(f"segment {segment_id} not found")
        conditions.append(
            exists().where(
                SegmentMember.shop_id == shop_id,
                SegmentMember.segment_id == segment_id,
                SegmentMember.customer_id == Profile.customer_id,
            )
        )
    if q is not None and q.strip():
        conditions.append(_search(q.strip()))
    return await page_of(session, shop_id, and_(*conditions), limit, cursor, sort)


async def _detail(session: SessionDep, profile: Profile, *, pii: bool) -> CustomerDetail:
    shop_id, customer_id = profile.shop_id, profile.customer_id
    tags = await tags_of(session, shop_id, [customer_id])
    groups = await session.scalars(
        select(GroupMember.group_id)
        .where(GroupMember.shop_id == shop_id, GroupMember.customer_id == customer_id)
        .order_by(GroupMember.group_id)
    )
    member_of = await session.scalars(
        select(SegmentMember.segment_id)
        .where(SegmentMember.shop_id == shop_id, SegmentMember.customer_id == customer_id)
        .order_by(SegmentMember.segment_id)
    )
    return CustomerDetail(
        **customer_fields(profile, tags.get(customer_id, []), pii=pii),  # type: ignore[arg-type]
        groups=list(groups),
        segments=list(member_of),
        edited_fields=sorted(profile.edited_fields or []),
    )


async def require_profile(session: SessionDep, shop_id: str, customer_id: str) -> Profile:
    profile = await ProfileRepository(session).get(shop_id, customer_id)
    if profile is None:
        raise NotFound(f"customer {customer_id} not found")
    return profile


@router.get(
    "/{customer_id}",
    response_model=CustomerDetail,
    summary="A customer's profile",
    description="Name, mobile, e-mail and birthday in full only for keys with the `pii` scope.",
)
async def get_customer(customer_id: str, caller: CallerDep, session: ReadSessionDep) -> CustomerDetail:
    profile = await require_profile(session, caller.shop_id, customer_id)
    return await _detail(session, profile, pii=caller.can("pii"))


@router.patch(
    "/{customer_id}",
    response_model=CustomerDetail,
    summary="Edit a customer's profile (会员信息登记)",
    description="Only the fields given change; null clears one. Edited fields are kept when later orders "
    "carry other values. Emits `customer.profile_updated` (loyalty's birthday and profile bonuses).",
)
async def patch_customer(
    customer_id: str, body: CustomerPatch, caller: CallerDep, session: SessionDep, outbox: OutboxDep
) -> CustomerDetail:
    shop_id = caller.shop_id
    profile = await require_profile(session, shop_id, customer_id)
    changes = body.model_dump(exclude_unset=True)
    if changes:
        edited = sorted(set(profile.edited_fields or []) | set(changes))
        await session.execute(
            update(Profile)
            .where(Profile.shop_id == shop_id, Profile.customer_id == customer_id)
            .values(**changes, edited_fields=edited, updated_at=func.now())
        )
        await session.refresh(profile)
        await outbox.add(
            session,
            topic=Topic.SEGMENTATION,
            event_type=PROFILE_UPDATED,
            shop_id=shop_id,
            key=event_key(shop_id, customer_id),
            payload=ProfileUpdatedPayload(
                customer_id=customer_id,
                changed=sorted(changes),
                birthday=profile.birthday,
                profile_complete=all(getattr(profile, f) is not None for f in PROFILE_COMPLETE_FIELDS),
            ),
        )
        await segments.refresh_customers(session, outbox, shop_id, [customer_id], clock.now())
    return await _detail(session, profile, pii=caller.can("pii"))


@router.post("/{customer_id}/tags", response_model=list[str], summary="Add tags to a customer")
async def add_tags(
    customer_id: str, body: TagsIn, caller: CallerDep, session: SessionDep, outbox: OutboxDep
) -> list[str]:
    await require_profile(session, caller.shop_id, customer_id)
    await session.execute(
        insert(CustomerTag)
        .values([{"shop_id": caller.shop_id, "customer_id": customer_id, "tag": t} for t in body.tags])
        .on_conflict_do_nothing()
    )
    await segments.refresh_customers(session, outbox, caller.shop_id, [customer_id], clock.now())
    return (await tags_of(session, caller.shop_id, [customer_id])).get(customer_id, [])


@router.delete(
    # `:path`: a tag may hold a slash ("新客/老客"), sent encoded (%2F) and decoded before routing.
    "/{customer_id}/tags/{tag:path}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Remove a tag from a customer",
    description="Encode the tag in the path (`VIP%20%E9%87%91`, `a%2Fb`).",
)
async def remove_tag(
    customer_id: str, tag: str, caller: CallerDep, session: SessionDep, outbox: OutboxDep
) -> Response:
    await require_profile(session, caller.shop_id, customer_id)
    await session.execute(
        delete(CustomerTag).where(
            CustomerTag.shop_id == caller.shop_id,
            CustomerTag.customer_id == customer_id,
            CustomerTag.tag == tag,
        )
    )
    await segments.refresh_customers(session, outbox, caller.shop_id, [customer_id], clock.now())
    return Response(status_code=status.HTTP_204_NO_CONTENT)
