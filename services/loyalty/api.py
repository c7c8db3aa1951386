"""HTTP API of the loyalty service: the programme, members, their ledger, adjustments and sign-in."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response, status
from sqlalchemy import func, select

from laoke.contracts.loyalty import TIERS_RENAMED, RenamedTier, TiersRenamedPayload
from laoke.contracts.topics import Topic
from laoke.kit import clock
from laoke.kit.db import ReadSessionDep, SessionDep
from laoke.kit.errors import ERROR_RESPONSES, NotFound
from laoke.kit.idempotency import IdempotencyKeyHeader, run_idempotent
from laoke.kit.ids import new_id
from laoke.kit.jsonutil import dumps
from laoke.kit.money import from_fen
from laoke.kit.service import CallerDep, OutboxDep
from services.loyalty import activity_tasks, program
from services.loyalty.ledger import Ledger
from services.loyalty.models import Member, PointsEntry, PointsLot, Program, idempotency_keys
from services.loyalty.orders import progress
from services.loyalty.program import ProgramSettings
from services.loyalty.rewards import existing_member
from services.loyalty.schemas import (
    AdjustmentIn,
    AdjustmentOut,
    EntryOut,
    Expiring,
    LedgerPage,
    LiabilityOut,
    MemberOut,
    NextTier,
    SigninOut,
)

router = APIRouter(prefix="/api/v1/loyalty", tags=["loyalty"], responses=ERROR_RESPONSES)


@router.get("/program", response_model=ProgramSettings, summary="The shop's loyalty programme")
async def get_program(caller: CallerDep, session: SessionDep) -> ProgramSettings:
    return await program.load(session, caller.shop_id)


@router.put(
    "/program",
    response_model=ProgramSettings,
    summary="Set the loyalty programme",
    description="Earn rate and rounding, when points are credited, tiers (thresholds rise with level, "
    "discounts never rise), never-downgrade or a re-evaluation window, sign-in, expiry, bonuses. "
    "Replaces the whole programme; earning, sign-in and expiry rules apply to what happens from now "
    "on. When the tiers' levels or thresholds change, existing members are placed in them in the "
    "background within seconds (upwards only, a `loyalty.tier_changed` event for each member who "
    "moves); the answer then carries `X-Laoke-Tier-Placement: started`. Renamed tiers are announced "
    "once as `loyalty.tiers_renamed`.",
    responses={
        200: {
            "headers": {
                "X-Laoke-Tier-Placement": {
                    "description": "`started` when the tiers changed and existing members are being placed",
                    "schema": {"type": "string", "enum": ["started"]},
                }
            }
        }
    },
)
async def put_program(
    body: ProgramSettings, caller: CallerDep, session: SessionDep, outbox: OutboxDep, response: Response
) -> ProgramSettings:
    stored = await session.get(Program, caller.shop_id, with_for_update=True)
    before = ProgramSettings.model_validate(stored.settings) if stored is not None else program.DEFAULT
    if stored is None:
        stored = Program(shop_id=caller.shop_id)
        session.add(stored)
    stored.settings = body.model_dump(mode="json")
    stored.updated_at = clock.now()
    if body.tiers and _placing(body) != _placing(before):
        # A shop that sets up tiers after its history is in would otherwise keep its best buyers at
        # level 0 until their next order, while their page says the next tier needs nothing more.
        stored.placed_after = ""  # from the first member (services/loyalty/tiers.py place_members)
        response.headers["X-Laoke-Tier-Placement"] = "started"
    elif not body.tiers:
        stored.placed_after = None  # no tiers left to place anyone in
    previous = {t.level: t.name for t in before.tiers}
    renamed = [
        RenamedTier(level=t.level, name=t.name, previous_name=previous[t.level])
        for t in body.tiers
        if t.level in previous and previous[t.level] != t.name
    ]
    if renamed:
        # Members who stay in a renamed tier do not move, so no tier_changed event would carry its new
        # name to the copies other services keep (lists, segment rules, campaign variants by tier).
        await outbox.add(
            session,
            topic=Topic.LOYALTY,
            event_type=TIERS_RENAMED,
            shop_id=caller.shop_id,
            key=f"{caller.shop_id}:tiers",
            occurred_at=stored.updated_at,
            payload=TiersRenamedPayload(tiers=renamed),
        )
    program.forget(caller.shop_id)
    return body


def _placing(settings: ProgramSettings) -> tuple[object, ...]:
    """What decides who is in which tier: a change of names, discounts or perks moves nobody."""
    return tuple((t.level, t.min_spend, t.min_orders) for t in settings.tiers), settings.reevaluation_days


async def member_out(session: SessionDep, settings: ProgramSettings, member: Member) -> MemberOut:
    now = clock.now()
    spend, orders = await progress(session, settings, member)
    tier = settings.tier(member.tier_level)
    following = next((t for t in settings.tiers if t.level > member.tier_level), None)
    soon = (
        await session.execute(
            select(func.sum(PointsLot.remaining), func.min(PointsLot.expires_at)).where(
                PointsLot.shop_id == member.shop_id,
                PointsLot.customer_id == member.customer_id,
                PointsLot.remaining > 0,
                PointsLot.expires_at <= now + timedelta(days=settings.expiry.notice_days),
            )
        )
    ).one()
    return MemberOut(
        customer_id=member.customer_id,
        tier_level=member.tier_level,
        tier=tier.name if tier else None,
        discount=tier.discount if tier else 100,
        points_available=member.points_balance,
        points_pending=member.points_pending,
        lifetime_earned=member.lifetime_earned,
        expiring_soon=Expiring(points=int(soon[0]), expires_at=soon[1]) if soon[0] else None,
        signin_streak=member.signin_streak,
        signed_in_today=member.last_signin_on == settings.today(now),
        qualifying_spend=from_fen(spend),
        qualifying_orders=orders,
        next_tier=(
            NextTier(
                level=following.level,
                name=following.name,
                spend_needed=from_fen(max(following.min_spend_fen - spend, 0)),
                orders_needed=max(following.min_orders - orders, 0),
            )
            if following
            else None
        ),
        member_since=member.created_at,
        updated_at=member.updated_at,
    )


async def _member(session: SessionDep, shop_id: str, customer_id: str) -> Member:
    member = await session.scalar(
        select(Member).where(Member.shop_id == shop_id, Member.customer_id == customer_id)
    )
    if member is None:
        raise NotFound(f"member {customer_id} not found")
    return member


@router.get(
    "/liability",
    response_model=LiabilityOut,
    summary="Points liability: outstanding, pending, and expiring within 30 / 60 / 90 days",
)
async def liability(caller: CallerDep, session: SessionDep) -> LiabilityOut:
    totals = (
        await session.execute(
            select(
                func.count(),
                func.coalesce(func.sum(Member.points_balance), 0),
                func.coalesce(func.sum(Member.points_pending), 0),
            ).where(Member.shop_id == caller.shop_id)
        )
    ).one()
    now = clock.now()
    # One pass over the lots that expire within 90 days, summed three ways.
    within = [
        func.coalesce(
            func.sum(PointsLot.remaining).filter(PointsLot.expires_at <= now + timedelta(days=d)), 0
        )
        for d in (30, 60, 90)
    ]
    sums = (
        await session.execute(
            select(*within).where(
                PointsLot.shop_id == caller.shop_id,
                PointsLot.remaining > 0,
                PointsLot.expires_at <= now + timedelta(days=90),
            )
        )
    ).one()
    expiring = {str(d): int(v) for d, v in zip((30, 60, 90), sums, strict=True)}
    return LiabilityOut(
        members=totals[0], points_outstanding=int(totals[1]), points_pending=int(totals[2]), expiring=expiring
    )


@router.get(
    "/members/{customer_id}",
    response_model=MemberOut,
    summary="A member: tier, points, expiring points, streak, what the next tier needs",
    description="A member exists for every customer with an order, and for anyone who signed in.",
)
async def get_member(customer_id: str, caller: CallerDep, session: ReadSessionDep) -> MemberOut:
    settings = await program.load(session, caller.shop_id)
    return await member_out(session, settings, await _member(session, caller.shop_id, customer_id))


@router.get("/members/{customer_id}/ledger", response_model=LedgerPage, summary="A member's points ledger")
async def get_ledger(
    customer_id: str,
    caller: CallerDep,
    session: ReadSessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(pattern=r"^\d{1,19}$", description="Newest first")] = None,
) -> LedgerPage:
    await _member(session, caller.shop_id, customer_id)
    query = select(PointsEntry).where(
        PointsEntry.shop_id == caller.shop_id, PointsEntry.customer_id == customer_id
    )
    if cursor:
        query = query.where(PointsEntry.id < int(cursor))
    rows = list(await session.scalars(query.order_by(PointsEntry.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return LedgerPage(
        items=[
            EntryOut(
                id=r.id,
                kind=r.kind,
                points=r.points,
                pending=r.pending,
                reference=r.reference,
                note=r.note,
                created_at=r.created_at,
            )
            for r in rows
        ],
        next_cursor=str(rows[-1].id) if more and rows else None,
    )


@router.post(
    "/members/{customer_id}/adjustments",
    response_model=AdjustmentOut,
    status_code=status.HTTP_201_CREATED,
    summary="Add or take points by hand, with a reason",
    description="A negative adjustment never takes the balance below zero (409 `insufficient_points`). "
    "Send an `Idempotency-Key`: a retry returns the first answer instead of adjusting twice.",
)
async def adjust(
    customer_id: str,
    body: AdjustmentIn,
    caller: CallerDep,
    session: SessionDep,
    outbox: OutboxDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    async def work() -> tuple[int, bytes]:
        settings = await program.load(session, caller.shop_id)
        ledger = Ledger(session, outbox, caller.shop_id, settings)
        member = await existing_member(ledger, customer_id)
        # Unique per request; with a key, a retry that slipped past the stored answer still books once.
        key = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32] if idempotency_key else new_id("adj")
        reference = f"adjust:{customer_id}:{key}"
        if body.points > 0:
            booked = await ledger.credit(member, "adjust", body.points, reference, note=body.reason)
        else:
            booked = await ledger.debit(member, "adjust", -body.points, reference, note=body.reason)
        assert booked is not None
        out = AdjustmentOut(
            entry_id=booked.entry_id, points=body.points, points_available=member.points_balance
        )
        return status.HTTP_201_CREATED, dumps(out.model_dump(mode="json"))

    return await run_idempotent(idempotency_keys, session, caller.shop_id, idempotency_key, body, work)


@router.post(
    "/members/{customer_id}/signin",
    response_model=SigninOut,
    summary="Daily sign-in (签到)",
    description="Once per shop-local day: a second call the same day awards nothing and says so "
    "(`signed_in: false`). Consecutive days build a streak; streak bonuses pay on the days configured. "
    "Creates the member if needed.",
)
async def signin(
    customer_id: Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")],
    caller: CallerDep,
    session: SessionDep,
    outbox: OutboxDep,
    request: Request,
) -> SigninOut:
    settings = await program.load(session, caller.shop_id)
    ledger = Ledger(session, outbox, caller.shop_id, settings)
    member = await ledger.member(customer_id)
    assert member is not None
    today = settings.today(clock.now())
    if member.last_signin_on == today:
        return SigninOut(
            signed_in=False,
            day=today,
            points=0,
            bonus=0,
            streak=member.signin_streak,
            points_available=member.points_balance,
        )
    rules = settings.signin
    streak = member.signin_streak + 1 if member.last_signin_on == today - timedelta(days=1) else 1
    longest = max((b.days for b in rules.streak_bonuses), default=0)
    if rules.cycle and longest and streak > longest:
        streak = 1
    member.signin_streak = streak
    member.last_signin_on = today
    await ledger.credit(member, "signin", rules.daily_points, f"signin:{customer_id}:{today.isoformat()}")
    bonus = next((b.points for b in rules.streak_bonuses if b.days == streak), 0)
    if bonus:
        await ledger.credit(
            member, "bonus", bonus, f"streak:{customer_id}:{today.isoformat()}", note=f"{streak}-day streak"
        )
    await activity_tasks.happened(
        session,
        outbox,
        request.app.state.settings,
        settings,
        caller.shop_id,
        customer_id,
        "signin",
        clock.now(),
    )
    await session.flush()
    return SigninOut(
        signed_in=True,
        day=today,
        points=rules.daily_points,
        bonus=bonus,
        streak=streak,
        points_available=member.points_balance,
    )
