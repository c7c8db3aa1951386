"""Segment membership, kept current so that entering and leaving a segment can be announced.

Two ways keep `segment_members` equal to "who matches the rule now":
- **per customer**, after every event or edit that touches a profile: one statement evaluates every
  segment of the shop for those customers, the difference to the stored membership is applied and
  announced (`segment.entered` / `segment.exited`) through the outbox in the same transaction;
- **per segment, set-based**, after a history import, an RFM config change, a bulk tag, and on the
  schedule (rules over time, like `recency_days` or `carted within 7 days`, change without events):
  one statement per segment inserts who entered, deletes who left and writes their events.

A segment's first population (when it is saved) is its starting set and announces nothing, as a
customer's first RFM scoring does not: automations react to buyers who enter afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import (
    ColumnElement,
    Integer,
    String,
    and_,
    cast,
    delete,
    exists,
    func,
    insert,
    literal,
    null,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.contracts.envelope import event_key
from laoke.contracts.segmentation import SEGMENT_ENTERED, SEGMENT_EXITED, SegmentMembershipPayload
from laoke.contracts.topics import Topic
from laoke.kit.outbox import Outbox
from services.segmentation.models import Profile, Segment, SegmentMember, plumbing
from services.segmentation.rules import compile_rule

_members = SegmentMember.__table__
_outbox = plumbing.outbox


async def shop_segments(session: AsyncSession, shop_id: str) -> list[Segment]:
    return list(await session.scalars(select(Segment).where(Segment.shop_id == shop_id).order_by(Segment.id)))


async def refresh_customers(
    session: AsyncSession, outbox: Outbox, shop_id: str, customer_ids: Sequence[str], now: datetime
) -> tuple[int, int]:
    """Re-evaluate every segment of the shop for a few customers; returns (entered, exited)."""
    segments = await shop_segments(session, shop_id)
    if not segments or not customer_ids:
        return 0, 0
    matches = select(
        Profile.customer_id,
        *(compile_rule(s.rule, shop_id, now).label(f"s{i}") for i, s in enumerate(segments)),
    ).where(Profile.shop_id == shop_id, Profile.customer_id.in_(customer_ids))
    now_in = {
        (segment.id, row.customer_id)
        for row in await session.execute(matches)
        for i, segment in enumerate(segments)
        if row[i + 1]
    }
    was_in = {
        (row.segment_id, row.customer_id)
        for row in await session.execute(
            select(SegmentMember.segment_id, SegmentMember.customer_id).where(
                SegmentMember.shop_id == shop_id, SegmentMember.customer_id.in_(customer_ids)
            )
        )
    }
    entered, exited = now_in - was_in, was_in - now_in
    if entered:
        await session.execute(
            pg_insert(_members)
            .values([{"shop_id": shop_id, "segment_id": s, "customer_id": c} for s, c in entered])
            .on_conflict_do_nothing()
        )
    for segment_id, customer_id in exited:
        await session.execute(
            delete(_members).where(
                _members.c.shop_id == shop_id,
                _members.c.segment_id == segment_id,
                _members.c.customer_id == customer_id,
            )
        )
    for event_type, changes, step in ((SEGMENT_ENTERED, entered, 1), (SEGMENT_EXITED, exited, -1)):
        for segment_id, customer_id in sorted(changes):
            await outbox.add(
                session,
                topic=Topic.SEGMENTATION,
                event_type=event_type,
                shop_id=shop_id,
                key=event_key(shop_id, customer_id),
                occurred_at=now,
                payload=SegmentMembershipPayload(segment_id=segment_id, customer_id=customer_id),
            )
            await session.execute(
                update(Segment)
                .where(Segment.shop_id == shop_id, Segment.id == segment_id)
                .values(size=Segment.size + step)
            )
    return len(entered), len(exited)


def _events(changed: object, event_type: str, shop_id: str, segment_id: str, now: datetime) -> object:
    """Outbox rows for every customer id in the CTE `changed`, built in SQL."""
    rows = select(
        func.gen_random_uuid().label("event_id"),
        changed.c.customer_id,  # type: ignore[attr-defined]
    ).subquery()
    envelope = func.jsonb_build_object(
        "event_id",
        rows.c.event_id,
        "type",
        literal(event_type, String),
        "version",
        literal(1, Integer),
        "shop_id",
        literal(shop_id, String),
        "occurred_at",
        literal(now.isoformat(), String),
        "correlation_id",
        null(),
        "producer",
        literal("segmentation", String),
        "payload",
        func.jsonb_build_object("segment_id", literal(segment_id, String), "customer_id", rows.c.customer_id),
    )
    return (
        insert(_outbox)
        .from_select(
            ["event_id", "topic", "key", "event_type", "shop_id", "envelope"],
            select(
                rows.c.event_id,
                literal(Topic.SEGMENTATION.value, String),
                literal(f"{shop_id}:", String) + rows.c.customer_id,
                literal(event_type, String),
                literal(shop_id, String),
                cast(envelope, JSONB),
            ),
        )
        .returning(_outbox.c.id)
    )


async def refresh_segment(
    session: AsyncSession, segment: Segment, now: datetime, *, announce: bool = True
) -> tuple[int, int]:
    """Set-based: bring one segment's members up to date in one statement; returns (entered, exited)."""
    shop_id, segment_id = segment.shop_id, segment.id
    condition: ColumnElement[bool] = compile_rule(segment.rule, shop_id, now)
    member = and_(_members.c.shop_id == shop_id, _members.c.segment_id == segment_id)
    # A segment without members (a new one, above all) is filled without looking for members it
    # already has. The planner would take `segment_members` for empty when it is (vacuumed, 0 pages)
    # and scan all of it for every matching profile, while the insert grows it: a segment of a
    # million buyers then ran for minutes instead of ~6 s.
    has_members = bool(await session.scalar(select(exists().where(member))))
    matching = select(literal(shop_id, String), literal(segment_id, String), Profile.customer_id).where(
        condition
    )
    if has_members:
        matching = matching.where(~exists().where(member, _members.c.customer_id == Profile.customer_id))
    entered = (
        pg_insert(_members)
        .from_select(["shop_id", "segment_id", "customer_id"], matching)
        .on_conflict_do_nothing()
        .returning(_members.c.customer_id)
        .cte("entered")
    )
    changes = [entered]
    if has_members:
        exited = (
            delete(_members)
            .where(
                member,
                ~exists(
                    select(Profile.customer_id).where(
                        Profile.shop_id == shop_id, Profile.customer_id == _members.c.customer_id, condition
                    )
                ),
            )
            .returning(_members.c.customer_id)
            .cte("exited")
        )
        changes.append(exited)
    counts = [select(func.count()).select_from(changed).scalar_subquery() for changed in changes]
    if announce:
        for event_type, changed in zip((SEGMENT_ENTERED, SEGMENT_EXITED), changes, strict=False):
            written = _events(changed, event_type, shop_id, segment_id, now).cte(f"{changed.name}_events")  # type: ignore[attr-defined]
            counts.append(select(func.count()).select_from(written).scalar_subquery())
    row = (await session.execute(select(*counts))).one()
    size = await session.scalar(select(func.count()).select_from(_members).where(member))
    await session.execute(
        update(Segment)
        .where(Segment.shop_id == shop_id, Segment.id == segment_id)
        .values(size=size, refreshed_at=now)
    )
    exited_count = int(row[1]) if has_members else 0  # without members, row[1] counts entered events
    return int(row[0]), exited_count


async def refresh_shop(session: AsyncSession, shop_id: str, now: datetime) -> tuple[int, int]:
    entered = exited = 0
    for segment in await shop_segments(session, shop_id):
        e, x = await refresh_segment(session, segment, now)
        entered, exited = entered + e, exited + x
    return entered, exited
