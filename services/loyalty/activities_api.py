"""Engagement activities (日常互动): create and run them, take part, invite, and read their results."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.kit import clock
from laoke.kit.db import SessionDep
from laoke.kit.errors import ERROR_RESPONSES, Conflict
from laoke.kit.idempotency import IdempotencyKeyHeader, run_idempotent
from laoke.kit.ids import new_id
from laoke.kit.jsonutil import dumps
from laoke.kit.money import from_fen
from laoke.kit.paging import newest_first, split_page
from laoke.kit.segments import segment_size
from laoke.kit.service import CallerDep, OutboxDep
from laoke.kit.settings import ServiceSettings
from services.loyalty import activities, coupons, participations, program
from services.loyalty.activity_schemas import (
    CHANGEABLE_WHEN_LIVE,
    ActivityIn,
    ActivityList,
    ActivityOut,
    ActivityPatch,
    ActivityStats,
    ActivityType,
    InvitationIn,
    InvitationOut,
    ParticipationIn,
    ParticipationList,
    ParticipationOut,
)
from services.loyalty.models import Activity, Member, Participation, idempotency_keys

router = APIRouter(prefix="/api/v1/activities", tags=["activities"], responses=ERROR_RESPONSES)

ActivityId = Annotated[str, Path(max_length=32)]


class InvalidTransition(Conflict):
    code = "invalid_transition"


NEXT_STATUS = {"draft": {"draft", "live", "ended"}, "live": {"live", "ended"}, "ended": {"ended"}}


def _activity_out(activity: Activity) -> ActivityOut:
    # Through the model rather than as stored: JSONB keeps keys in its own order, a reader wants the
    # documented one.
    rules = activities.rules_of(activity).model_dump(mode="json")
    if activity.type == "guess_price" and activity.revealed_at is None:
        rules["price"] = None  # the answer stays secret until the reveal
    return ActivityOut(
        id=activity.id,
        type=activity.type,  # type: ignore[arg-type]
        title=activity.title,
        status=activity.status,  # type: ignore[arg-type]
        starts_at=activity.starts_at,
        ends_at=activity.ends_at,
        rules=rules,
        rewards_given=activity.rewards_given,
        points_awarded=activity.points_awarded,
        revealed=activity.revealed_at is not None,
        created_at=activity.created_at,
    )


def _participation_out(row: Participation, balance: int | None = None) -> ParticipationOut:
    return ParticipationOut(
        id=row.id,
        activity_id=row.activity_id,
        customer_id=row.customer_id,
        status=row.status,
        points_cost=row.points_cost,
        points_awarded=row.points_awarded,
        coupon_code=row.coupon_code,
        slot=row.slot,
        note=row.note,
        answer=row.answer,
        points_available=balance,
        created_at=row.created_at,
    )


@router.post(
    "",
    response_model=ActivityOut,
    status_code=status.HTTP_201_CREATED,
    summary="Create an activity",
    description="Types: `favorite_shop`, `favorite_item`, `add_to_cart` (completed by the behaviour event), "
    "`profile_completion`, `birthday_registration` (by the profile edit), `survey`, `vote`, `grab` (a pool "
    "per daily slot), `guess_price` (revealed after the window), `task_chain` (a bonus when every task is "
    "done in the window) and `referral` (the inviter is paid when the invitee's first order completes). "
    "Times are UTC instants; `slots` are shop-local times of day.",
)
async def create_activity(
    body: ActivityIn, caller: CallerDep, session: SessionDep, request: Request
) -> ActivityOut:
    await _check_references(session, request, caller.shop_id, body)
    now = clock.now()
    activity = Activity(
        id=new_id("act"),
        shop_id=caller.shop_id,
        type=body.type,
        title=body.title,
        status=body.status,
        starts_at=body.starts_at,
        ends_at=body.ends_at,
        rules=body.rules().model_dump(mode="json"),
        reward_points=body.reward_points,
        budget_points=body.budget_points,
        stock=body.stock,
        rewards_given=0,
        points_awarded=0,
        created_at=now,
        updated_at=now,
    )
    session.add(activity)
    await session.flush()
    return _activity_out(activity)


@router.get(
    "",
    response_model=ActivityList,
    summary="The shop's activities, newest first",
    description="`limit` at a time; `next_cursor` gives the next page.",
)
async def list_activities(
    caller: CallerDep,
    session: SessionDep,
    status_: Annotated[str | None, Query(alias="status", pattern="^(draft|live|ended)$")] = None,
    type_: Annotated[ActivityType | None, Query(alias="type")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> ActivityList:
    query = select(Activity).where(Activity.shop_id == caller.shop_id)
    if status_:
        query = query.where(Activity.status == status_)
    if type_:
        query = query.where(Activity.type == type_)
    query = newest_first(query, Activity.created_at, Activity.id, limit, cursor)
    rows, next_cursor = split_page(list(await session.scalars(query)), limit, lambda a: (a.created_at, a.id))
    return ActivityList(items=[_activity_out(a) for a in rows], next_cursor=next_cursor)


@router.get("/{activity_id}", response_model=ActivityOut, summary="An activity")
async def get_activity(activity_id: ActivityId, caller: CallerDep, session: SessionDep) -> ActivityOut:
    return _activity_out(await activities.load(session, caller.shop_id, activity_id))


@router.patch(
    "/{activity_id}",
    response_model=ActivityOut,
    summary="Change an activity: a draft wholly, a live one's title, end, budget, stock and who may join",
    description="A field left out keeps its value. A draft may change everything but its type, checked as "
    "a new activity is (422). Once live, only `title`, `description`, `ends_at`, `budget_points`, `stock` "
    "and `eligibility` (who may take part from now on) change; anything else is 409, members having taken "
    "part under it. `status` moves draft → live → ended only (409 `invalid_transition`). Ending a price "
    "guess reveals it at once: winners are paid.",
)
async def patch_activity(
    activity_id: ActivityId,
    body: ActivityPatch,  # type: ignore[valid-type]
    caller: CallerDep,
    session: SessionDep,
    outbox: OutboxDep,
    request: Request,
) -> ActivityOut:
    activity = await activities.load(session, caller.shop_id, activity_id, lock=True)
    changes: dict[str, Any] = body.model_dump(exclude_unset=True)  # type: ignore[attr-defined]
    if "status" in changes and changes["status"] not in NEXT_STATUS[activity.status]:
        raise InvalidTransition(
            f"activity {activity_id} is {activity.status} and cannot become {changes['status']}"
        )
    if activity.status != "draft" and (fixed := sorted(set(changes) - CHANGEABLE_WHEN_LIVE)):
        raise Conflict(
            f"{', '.join(fixed)} can change only while activity {activity_id} is a draft (it is "
            f"{activity.status}, and members take part under what it was)"
        )
    for name in ("stock", "budget_points"):
        if changes.get(name) is not None:
            spent = activity.rewards_given if name == "stock" else activity.points_awarded
            if changes[name] < spent:
                raise Conflict(f"{name} cannot go below what was already given ({spent})")
    checked = _changed(activity, changes)
    if {"reward_coupon_template_id", "eligibility"} & set(changes):
        await _check_references(session, request, caller.shop_id, checked)
    activity.rules = checked.rules().model_dump(mode="json")
    activity.title, activity.starts_at, activity.ends_at = checked.title, checked.starts_at, checked.ends_at
    activity.reward_points, activity.budget_points = checked.reward_points, checked.budget_points
    activity.stock = checked.stock
    activity.status = changes.get("status", activity.status)
    activity.updated_at = clock.now()
    await session.flush()
    if activity.status == "ended" and activity.type == "guess_price" and activity.revealed_at is None:
        await activities.reveal(session, outbox, activity, await program.load(session, caller.shop_id))
    await session.refresh(activity)
    return _activity_out(activity)


async def _check_references(session: AsyncSession, request: Request, shop_id: str, body: ActivityIn) -> None:
    """The coupon it rewards and the segment it is open to exist in the shop: an activity naming a segment
    that is not there would refuse every member, each told the segment is not found."""
    if body.reward_coupon_template_id:
        await coupons.load_template(session, shop_id, body.reward_coupon_template_id)
    if body.eligibility.segment_id:
        segment_id = body.eligibility.segment_id
        await segment_size(request.app.state.settings, shop_id, segment_id, "eligibility.segment_id")


def _changed(activity: Activity, changes: dict[str, Any]) -> ActivityIn:
    """The activity with the changes, as a new activity would be checked (422 where it would be refused).
    Its status is checked by its own rule (NEXT_STATUS): a draft is cancelled by ending it, which a new
    activity cannot be created as."""
    current = {
        "type": activity.type,
        "title": activity.title,
        "starts_at": activity.starts_at,
        "ends_at": activity.ends_at,
        **activity.rules,
    }
    merged = current | {name: value for name, value in changes.items() if name != "status"}
    try:
        return ActivityIn.model_validate(merged)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from exc


@router.post(
    "/{activity_id}/participations",
    response_model=ParticipationOut,
    status_code=status.HTTP_201_CREATED,
    summary="Take part: answer, vote, grab, guess or accept an invitation",
    description="Checked in one transaction: live and inside its window and slot (409 `not_live`, "
    "`outside_window`, `outside_slot`), eligibility (403 `not_eligible`), per-member limits (409 "
    "`limit_reached`, `already_participated`), the answer (422 `invalid_answer`), passphrase (403 "
    "`wrong_passphrase`), pool and budget (409 `pool_empty`, `budget_exhausted`), points cost (409 "
    "`insufficient_points`), referral rules (409 `referral_refused`: self, loop, same phone, not new). "
    "Task types answer 422 `completed_automatically`. Send an `Idempotency-Key` so a retry never takes "
    "part twice.",
)
async def take_part(
    activity_id: ActivityId,
    body: ParticipationIn,
    caller: CallerDep,
    session: SessionDep,
    outbox: OutboxDep,
    request: Request,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    async def work() -> tuple[int, bytes]:
        settings: ServiceSettings = request.app.state.settings
        current = await program.load(session, caller.shop_id)
        done = await participations.participate(
            session, outbox, settings, current, activity_id, caller.shop_id, body
        )
        balance = await session.scalar(
            select(Member.points_balance).where(
                Member.shop_id == caller.shop_id, Member.customer_id == body.customer_id
            )
        )
        stored = await session.get(Participation, done.id, populate_existing=True)
        assert stored is not None
        out = _participation_out(stored, int(balance or 0))
        return status.HTTP_201_CREATED, dumps(out.model_dump(mode="json"))

    return await run_idempotent(idempotency_keys, session, caller.shop_id, idempotency_key, body, work)


@router.get(
    "/{activity_id}/participations",
    response_model=ParticipationList,
    summary="Who took part, newest first (one member's with `customer_id`)",
)
async def list_participations(
    activity_id: ActivityId,
    caller: CallerDep,
    session: SessionDep,
    customer_id: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> ParticipationList:
    await activities.load(session, caller.shop_id, activity_id)
    query = select(Participation).where(
        Participation.shop_id == caller.shop_id, Participation.activity_id == activity_id
    )
    if customer_id:
        query = query.where(Participation.customer_id == customer_id)
    query = newest_first(query, Participation.created_at, Participation.id, limit, cursor)
    rows, next_cursor = split_page(list(await session.scalars(query)), limit, lambda p: (p.created_at, p.id))
    return ParticipationList(items=[_participation_out(r) for r in rows], next_cursor=next_cursor)


@router.post(
    "/{activity_id}/invitations",
    response_model=InvitationOut,
    summary="A member's invite code for a referral activity (客户邀请)",
    description="Made on first ask (the member must be eligible), the same code afterwards.",
)
async def invite_code(
    activity_id: ActivityId,
    body: InvitationIn,
    caller: CallerDep,
    session: SessionDep,
    outbox: OutboxDep,
    request: Request,
) -> InvitationOut:
    current = await program.load(session, caller.shop_id)
    made = await participations.invitation(
        session, request.app.state.settings, current, outbox, activity_id, caller.shop_id, body.customer_id
    )
    return InvitationOut(activity_id=activity_id, customer_id=made.customer_id, code=made.code)


_STATS = text(
    """
    WITH p AS (
        SELECT customer_id, min(created_at) AS first_at FROM loyalty.participations
        WHERE shop_id = :shop_id AND activity_id = :activity_id GROUP BY customer_id
    )
    SELECT count(o.order_id) AS orders,
           coalesce(sum(o.paid_fen - o.refunded_fen), 0) AS revenue_fen
    FROM p JOIN loyalty.orders o ON o.shop_id = :shop_id AND o.customer_id = p.customer_id
    WHERE o.paid_fen > 0 AND o.placed_at >= p.first_at AND o.placed_at < p.first_at + interval '7 days'
    """
)
_ANSWERS = text(
    """
    SELECT a.key, coalesce(v.value, a.value #>> '{}') AS choice, count(*) AS members
    FROM loyalty.participations p
    CROSS JOIN LATERAL jsonb_each(p.answer -> 'answers') a
    LEFT JOIN LATERAL jsonb_array_elements_text(
        CASE WHEN jsonb_typeof(a.value) = 'array' THEN a.value END) v ON true
    WHERE p.shop_id = :shop_id AND p.activity_id = :activity_id AND p.answer ? 'answers'
    GROUP BY 1, 2
    """
)


async def _grouped(session: SessionDep, column: Any, activity: Activity, *where: Any) -> dict[str, int]:
    rows = await session.execute(
        select(column, func.count())
        .where(Participation.shop_id == activity.shop_id, Participation.activity_id == activity.id, *where)
        .group_by(column)
    )
    return {str(key): count for key, count in rows.all() if key is not None}


@router.get(
    "/{activity_id}/stats",
    response_model=ActivityStats,
    summary="Results: participants, rewards, budget left, orders and revenue within 7 days, answers",
    description="Orders count when a participant paid for them within 7 days after first taking part; "
    "revenue is what those orders kept (paid − refunded).",
)
async def activity_stats(activity_id: ActivityId, caller: CallerDep, session: SessionDep) -> ActivityStats:
    activity = await activities.load(session, caller.shop_id, activity_id)
    params = {"shop_id": caller.shop_id, "activity_id": activity_id}
    participants = await session.scalar(
        select(func.count(func.distinct(Participation.customer_id))).where(
            Participation.shop_id == caller.shop_id, Participation.activity_id == activity_id
        )
    )
    sums = (await session.execute(_STATS, params)).one()
    by_status = await _grouped(session, Participation.status, activity)
    cost = await session.scalar(
        select(func.coalesce(func.sum(Participation.points_cost), 0)).where(
            Participation.shop_id == caller.shop_id, Participation.activity_id == activity_id
        )
    )
    rules = activities.rules_of(activity)
    answers: dict[str, dict[str, int]] = {}
    if activity.type == "survey":
        by_attribute = {q.attribute or q.id: q for q in rules.questions}
        for key, choice, members in (await session.execute(_ANSWERS, params)).all():
            question = by_attribute.get(key)
            if question is None:
                continue
            counts = answers.setdefault(question.id, {})
            label = "answered" if question.kind == "text" else choice
            counts[label] = counts.get(label, 0) + members
    return ActivityStats(
        activity_id=activity_id,
        participants=participants or 0,
        participations=sum(by_status.values()),
        rewards_given=activity.rewards_given,
        points_awarded=activity.points_awarded,
        points_cost_collected=int(cost or 0),
        budget_points_left=None
        if activity.budget_points is None
        else activity.budget_points - activity.points_awarded,
        stock_left=None if activity.stock is None else activity.stock - activity.rewards_given,
        orders_within_7_days=sums.orders,
        revenue_within_7_days=from_fen(int(sums.revenue_fen)),
        by_status=by_status,
        answers=answers,
        votes=await _grouped(session, Participation.answer["option"].astext, activity)
        if activity.type == "vote"
        else {},
        slots=await _grouped(session, Participation.slot, activity, Participation.status == "won")
        if activity.type == "grab"
        else {},
    )
