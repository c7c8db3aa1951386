"""Engagement activities (日常互动): who may take part, when, how often, and the reward they earn.

Every participation runs in one transaction under the member's lock (the ledger's), then takes what
it needs from shared counters with conditional UPDATEs — a grab slot's pool, the activity's stock and
points budget — so however many members take part at once, nothing is over-awarded: a taker that
finds the counter exhausted rolls its whole participation back. Members are always locked before an
activity's row, by every path (API and event handlers), so the two locks never wait on each other in
a cycle.

Rewards are ledger entries with the participation as reference: booked once, however often the cause
is delivered.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

import httpx
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.contracts.envelope import event_key
from laoke.contracts.loyalty import (
    ACTIVITY_PARTICIPATED,
    ACTIVITY_REWARDED,
    ActivityParticipatedPayload,
    ActivityRewardedPayload,
)
from laoke.contracts.topics import Topic
from laoke.kit import clock
from laoke.kit.errors import Conflict, Forbidden, NotFound, ServiceUnavailable, Unprocessable
from laoke.kit.internal_auth import sign
from laoke.kit.outbox import Outbox
from laoke.kit.settings import ServiceSettings
from services.loyalty import coupons
from services.loyalty.activity_schemas import ActivityRules
from services.loyalty.ledger import Ledger
from services.loyalty.models import Activity, Member, Participation
from services.loyalty.program import ProgramSettings
from services.loyalty.rewards import LimitReached


class NotLive(Conflict):
    code = "not_live"


class OutsideWindow(Conflict):
    code = "outside_window"


class OutsideSlot(Conflict):
    code = "outside_slot"


class NotEligible(Forbidden):
    code = "not_eligible"


class AlreadyTaken(Conflict):
    code = "already_participated"


class BudgetExhausted(Conflict):
    code = "budget_exhausted"


class InvalidAnswer(Unprocessable):
    code = "invalid_answer"


@dataclass(frozen=True)
class Facts:
    """What segmentation knows of a customer that an activity asks about."""

    known: bool
    mobile: str | None
    in_segment: bool | None


def rules_of(activity: Activity) -> ActivityRules:
    return ActivityRules.model_validate(activity.rules)


def mobile_hash(mobile: str | None) -> str | None:
    # Kept hashed: loyalty only ever compares numbers, it never needs to read one.
    return hashlib.sha256(mobile.encode()).hexdigest() if mobile else None


async def load(session: AsyncSession, shop_id: str, activity_id: str, *, lock: bool = False) -> Activity:
    query = select(Activity).where(Activity.shop_id == shop_id, Activity.id == activity_id)
    activity = await session.scalar(query.with_for_update() if lock else query)
    if activity is None:
        raise NotFound(f"activity {activity_id} not found")
    return activity


def slot_now(activity: Activity, rules: ActivityRules, program: ProgramSettings, now: datetime) -> str | None:
    """The open slot as `<shop-local day>#<index>` (None when the activity has no slots). Raises when
    the activity is not live, outside its window, or between its slots."""
    if activity.status != "live":
        raise NotLive(f"activity {activity.id} is {activity.status}")
    if not activity.starts_at <= now < activity.ends_at:
        raise OutsideWindow(
            f"activity {activity.id} runs from {activity.starts_at.isoformat()} "
            f"to {activity.ends_at.isoformat()}"
        )
    if not rules.slots:
        return None
    local = now.astimezone(program.zone)
    for index, slot in enumerate(rules.slots):
        if slot.start <= local.time() < slot.end:
            return f"{local.date().isoformat()}#{index}"
    opening = ", ".join(f"{s.start:%H:%M}–{s.end:%H:%M}" for s in rules.slots)
    raise OutsideSlot(
        f"activity {activity.id} is open daily {opening} ({program.timezone}); now is {local:%H:%M}"
    )


def within_window(activity: Activity, at: datetime) -> bool:
    return activity.status == "live" and activity.starts_at <= at < activity.ends_at


async def customer_facts(
    settings: ServiceSettings, shop_id: str, customer_id: str, segment_id: str | None = None
) -> Facts:
    """Segmentation's view of a customer (internal credential). Unknown segment: 404; segmentation
    down: 503 (nothing is decided on a guess)."""
    path = f"/internal/v1/customers/{customer_id}/facts"
    params = {"segment_id": segment_id} if segment_id else {}
    try:
        async with httpx.AsyncClient(base_url=settings.segmentation_url, timeout=10) as client:
            headers = sign(settings.internal_secret, method="GET", path=path, shop_id=shop_id)
            response = await client.get(path, params=params, headers=headers)
            if response.status_code == 404:
                raise NotFound(f"segment {segment_id} not found")
            response.raise_for_status()
    except httpx.HTTPError as exc:
        raise ServiceUnavailable(f"could not ask segmentation about customer {customer_id}: {exc}") from exc
    body = response.json()
    return Facts(known=body["known"], mobile=body.get("mobile"), in_segment=body.get("in_segment"))


async def check_eligible(
    settings: ServiceSettings, activity: Activity, rules: ActivityRules, member: Member
) -> None:
    wanted = rules.eligibility
    if member.tier_level < wanted.min_tier_level:
        raise NotEligible(
            f"activity {activity.id} is for tier level {wanted.min_tier_level} and up; "
            f"member {member.customer_id} is at {member.tier_level}"
        )
    if wanted.segment_id:
        facts = await customer_facts(settings, activity.shop_id, member.customer_id, wanted.segment_id)
        if not facts.in_segment:
            raise NotEligible(
                f"activity {activity.id} is for segment {wanted.segment_id}; "
                f"member {member.customer_id} is not in it"
            )


async def check_limits(
    session: AsyncSession, activity: Activity, rules: ActivityRules, customer_id: str, day: date
) -> None:
    """Per-member limits count participations (rewarded or not); the member's lock serialises them."""
    if rules.per_member_limit is None and rules.per_member_daily_limit is None:
        return
    mine = (Participation.shop_id == activity.shop_id) & (Participation.activity_id == activity.id)
    mine &= Participation.customer_id == customer_id
    if rules.per_member_limit is not None:
        taken = await session.scalar(select(func.count()).where(mine)) or 0
        if taken >= rules.per_member_limit:
            raise LimitReached(
                f"member {customer_id} has taken part in activity {activity.id} {taken} times (limit)"
            )
    if rules.per_member_daily_limit is not None:
        today = await session.scalar(select(func.count()).where(mine, Participation.day == day)) or 0
        if today >= rules.per_member_daily_limit:
            raise LimitReached(f"member {customer_id} has taken part {today} times today (daily limit)")


async def record(session: AsyncSession, participation: Participation) -> bool:
    """Store a participation; False when its dedupe key was taken before (a vote, a task, a slot)."""
    values = {c.key: getattr(participation, c.key) for c in Participation.__table__.columns}
    values = {k: v for k, v in values.items() if v is not None}
    stored = await session.execute(
        insert(Participation).values(values).on_conflict_do_nothing().returning(Participation.id)
    )
    return stored.first() is not None


async def take_reward(
    session: AsyncSession,
    outbox: Outbox,
    ledger: Ledger,
    member: Member,
    activity: Activity,
    rules: ActivityRules,
    participation: Participation,
    *,
    claim_last: bool = False,
) -> bool:
    """Pay the activity's reward for this participation, within its stock and points budget. False
    when they are spent: nothing paid — or, with `claim_last`, paid but to be rolled back by the caller,
    which then raises. Claiming last holds the activity's row (shared by every participant) only for
    the end of the transaction, which is what a crowd on one activity queues for."""
    points = rules.reward_points
    if not points and not rules.reward_coupon_template_id:
        return True
    if not claim_last and not await _claim(session, activity, points):
        return False
    await _pay(session, outbox, ledger, member, activity, rules, participation)
    return await _claim(session, activity, points) if claim_last else True


async def _claim(session: AsyncSession, activity: Activity, points: int) -> bool:
    taken = await session.execute(
        update(Activity)
        .where(
            Activity.shop_id == activity.shop_id,
            Activity.id == activity.id,
            (Activity.stock.is_(None)) | (Activity.rewards_given < Activity.stock),
            (Activity.budget_points.is_(None)) | (Activity.points_awarded + points <= Activity.budget_points),
        )
        .values(rewards_given=Activity.rewards_given + 1, points_awarded=Activity.points_awarded + points)
        .returning(Activity.id)
    )
    return taken.first() is not None


async def _pay(
    session: AsyncSession,
    outbox: Outbox,
    ledger: Ledger,
    member: Member,
    activity: Activity,
    rules: ActivityRules,
    participation: Participation,
) -> None:
    points = rules.reward_points
    reference = f"activity:{participation.id}"
    if points:
        await ledger.credit(member, "bonus", points, reference, note=activity.title[:200])
        participation.points_awarded = points
    if rules.reward_coupon_template_id:
        template = await coupons.load_template(
            session, activity.shop_id, rules.reward_coupon_template_id, lock=True
        )
        issued, _ = await coupons.issue(
            session, outbox, template, [member.customer_id], source="activity", reference=reference
        )
        participation.coupon_code = issued.get(member.customer_id)
    participation.settled_at = clock.now()
    await outbox.add(
        session,
        topic=Topic.LOYALTY,
        event_type=ACTIVITY_REWARDED,
        shop_id=activity.shop_id,
        key=event_key(activity.shop_id, member.customer_id),
        payload=ActivityRewardedPayload(
            customer_id=member.customer_id,
            activity_id=activity.id,
            activity_type=activity.type,
            participation_id=participation.id,
            points=participation.points_awarded,
            coupon_code=participation.coupon_code,
        ),
    )


async def announce(
    session: AsyncSession, outbox: Outbox, activity: Activity, participation: Participation
) -> None:
    await outbox.add(
        session,
        topic=Topic.LOYALTY,
        event_type=ACTIVITY_PARTICIPATED,
        shop_id=activity.shop_id,
        key=event_key(activity.shop_id, participation.customer_id),
        payload=ActivityParticipatedPayload(
            customer_id=participation.customer_id,
            activity_id=activity.id,
            activity_type=activity.type,
            participation_id=participation.id,
            status=participation.status,
        ),
    )


def guess_wins(rules: ActivityRules, guess: Decimal) -> bool:
    assert rules.price is not None and rules.tolerance is not None
    return abs(guess - rules.price) <= rules.tolerance


async def reveal(session: AsyncSession, outbox: Outbox, activity: Activity, program: ProgramSettings) -> int:
    """Settle a price guess after its window: guesses within the tolerance win, earliest first while the
    stock and budget last. Returns the number of winners; 0 when another transaction revealed it first.
    The guessers are locked before the activity's row, as everywhere else."""
    rules = rules_of(activity)
    guessed = (
        (Participation.shop_id == activity.shop_id)
        & (Participation.activity_id == activity.id)
        & (Participation.status == "guessed")
    )
    ledger = Ledger(session, outbox, activity.shop_id, program)
    members = {}
    for customer_id in sorted(set(await session.scalars(select(Participation.customer_id).where(guessed)))):
        members[customer_id] = await ledger.member(customer_id)
    locked = await load(session, activity.shop_id, activity.id, lock=True)
    await session.refresh(locked)
    if locked.revealed_at is not None:
        return 0
    guesses = list(
        await session.scalars(
            select(Participation).where(guessed).order_by(Participation.created_at, Participation.id)
        )
    )
    winners = 0
    for guess in guesses:
        if not guess_wins(rules, Decimal(guess.answer["guess"])):
            guess.status = "lost"
            continue
        member = members[guess.customer_id]
        assert member is not None
        paid = await take_reward(session, outbox, ledger, member, locked, rules, guess)
        guess.status = "won" if paid else "unrewarded"
        guess.note = None if paid else "the reward's stock or budget ran out"
        winners += paid
    locked.revealed_at = clock.now()
    await session.flush()
    return winners
