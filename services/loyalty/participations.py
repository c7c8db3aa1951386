"""Taking part in an activity on request (`POST /api/v1/activities/{id}/participations`): answer a
survey, vote, grab, guess a price, or accept an invitation. Task types complete from events instead
(services/loyalty/activity_tasks.py)."""

from __future__ import annotations

from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.contracts.envelope import event_key
from laoke.contracts.loyalty import CUSTOMER_ATTRIBUTES_UPDATED, AttributesUpdatedPayload
from laoke.contracts.topics import Topic
from laoke.kit import clock
from laoke.kit.errors import Conflict, Forbidden, NotFound, Unprocessable
from laoke.kit.ids import new_id
from laoke.kit.outbox import Outbox
from laoke.kit.settings import ServiceSettings
from services.loyalty import activities, activity_tasks, coupons
from services.loyalty.activities import AlreadyTaken, BudgetExhausted, InvalidAnswer
from services.loyalty.activity_schemas import AUTOMATIC_TYPES, ActivityRules, ParticipationIn
from services.loyalty.ledger import Ledger
from services.loyalty.models import Activity, ActivitySlot, Invitation, LoyaltyOrder, Member, Participation
from services.loyalty.program import ProgramSettings


class CompletedAutomatically(Unprocessable):
    code = "completed_automatically"


class WrongPassphrase(Forbidden):
    code = "wrong_passphrase"


class PoolEmpty(Conflict):
    code = "pool_empty"


class ReferralRefused(Conflict):
    code = "referral_refused"


# Is `:invitee` already up the chain of who invited `:inviter`? Then this invitation would close a loop.
_INVITED_BY_CHAIN = text(
    """
    WITH RECURSIVE up(customer_id, depth) AS (
        SELECT CAST(:inviter AS text), 0
        UNION
        SELECT p.inviter_id, up.depth + 1 FROM loyalty.participations p
        JOIN up ON p.customer_id = up.customer_id
        WHERE p.shop_id = :shop_id AND p.activity_id = :activity_id AND p.inviter_id IS NOT NULL
          AND up.depth < 100
    )
    SELECT EXISTS (SELECT 1 FROM up WHERE customer_id = :invitee)
    """
)


def _survey_answer(rules: ActivityRules, body: ParticipationIn) -> dict[str, str | list[str]]:
    """The answers checked against the questions; keyed by the attribute each question fills."""
    answers = body.answers or {}
    questions = {q.id: q for q in rules.questions}
    unknown = sorted(set(answers) - set(questions))
    if unknown:
        raise InvalidAnswer(f"unknown question {unknown[0]!r}; questions: {', '.join(questions)}")
    attributes: dict[str, str | list[str]] = {}
    for question in rules.questions:
        given = answers.get(question.id)
        if given in (None, "", []):
            if question.required:
                raise InvalidAnswer(f"question {question.id!r} needs an answer")
            continue
        if question.kind == "multiple":
            chosen = [given] if isinstance(given, str) else list(given)
            if len(set(chosen)) != len(chosen):
                raise InvalidAnswer(f"question {question.id!r}: an option is chosen twice")
        elif isinstance(given, list):
            raise InvalidAnswer(f"question {question.id!r} takes one answer, not a list")
        else:
            chosen = [given]
        if question.kind == "text":
            if len(chosen[0]) > 500:
                raise InvalidAnswer(f"question {question.id!r}: answers are at most 500 characters")
        else:
            wrong = [c for c in chosen if c not in question.options]
            if wrong:
                raise InvalidAnswer(
                    f"question {question.id!r} has no option {wrong[0]!r}; "
                    f"options: {', '.join(question.options)}"
                )
        attributes[question.attribute or question.id] = chosen if question.kind == "multiple" else chosen[0]
    return attributes


async def _pool_left(session: AsyncSession, activity: Activity, rules: ActivityRules, slot: str) -> None:
    """A grab after the pool ran dry is refused at once, without locking anything (the conditional
    UPDATE in `_take_slot` still decides the race for the last prizes)."""
    taken = await session.scalar(
        select(ActivitySlot.taken).where(
            ActivitySlot.shop_id == activity.shop_id,
            ActivitySlot.activity_id == activity.id,
            ActivitySlot.slot == slot,
        )
    )
    if taken is not None and rules.slot_stock is not None and taken >= rules.slot_stock:
        raise PoolEmpty(f"the pool of slot {slot} is empty: all {rules.slot_stock} prizes were grabbed")


async def _take_slot(session: AsyncSession, activity: Activity, rules: ActivityRules, slot: str) -> None:
    """One prize from the slot's pool, first come first served: the conditional UPDATE queues the
    grabbers on the slot's row and refuses everyone after the last prize."""
    await session.execute(
        insert(ActivitySlot)
        .values(shop_id=activity.shop_id, activity_id=activity.id, slot=slot)
        .on_conflict_do_nothing()
    )
    taken = await session.execute(
        update(ActivitySlot)
        .where(
            ActivitySlot.shop_id == activity.shop_id,
            ActivitySlot.activity_id == activity.id,
            ActivitySlot.slot == slot,
            ActivitySlot.taken < rules.slot_stock,
        )
        .values(taken=ActivitySlot.taken + 1)
        .returning(ActivitySlot.taken)
    )
    if taken.first() is None:
        raise PoolEmpty(f"the pool of slot {slot} is empty: all {rules.slot_stock} prizes were grabbed")


async def _accept_invitation(
    session: AsyncSession,
    settings: ServiceSettings,
    activity: Activity,
    member: Member,
    participation: Participation,
    code: str | None,
) -> None:
    if not code:
        raise InvalidAnswer("a referral needs the inviter's `invite_code`")
    invitation = await session.scalar(
        select(Invitation).where(
            Invitation.shop_id == activity.shop_id,
            Invitation.activity_id == activity.id,
            Invitation.code == code,
        )
    )
    if invitation is None:
        raise NotFound(f"invite code {code} not found in activity {activity.id}")
    invitee = member.customer_id
    if invitation.customer_id == invitee:
        raise ReferralRefused("a member cannot invite themselves")
    looped = await session.scalar(
        _INVITED_BY_CHAIN,
        {
            "shop_id": activity.shop_id,
            "activity_id": activity.id,
            "inviter": invitation.customer_id,
            "invitee": invitee,
        },
    )
    if looped:
        raise ReferralRefused(
            f"{invitee} invited {invitation.customer_id} (directly or not): no referral loops"
        )
    completed = await session.scalar(
        select(LoyaltyOrder.order_id)
        .where(
            LoyaltyOrder.shop_id == activity.shop_id,
            LoyaltyOrder.customer_id == invitee,
            LoyaltyOrder.completed,
        )
        .limit(1)
    )
    if completed is not None:
        raise ReferralRefused(f"{invitee} has bought before: only new customers can be invited")
    facts = await activities.customer_facts(settings, activity.shop_id, invitee)
    if facts.mobile and activities.mobile_hash(facts.mobile) == invitation.mobile_hash:
        raise ReferralRefused("the invitee has the inviter's phone number")
    participation.inviter_id = invitation.customer_id
    participation.dedupe_key = f"invitee:{invitee}"
    participation.status = "pending"
    participation.answer = {"invite_code": code}


async def participate(
    session: AsyncSession,
    outbox: Outbox,
    settings: ServiceSettings,
    program: ProgramSettings,
    activity_id: str,
    shop_id: str,
    body: ParticipationIn,
) -> Participation:
    activity = await activities.load(session, shop_id, activity_id)
    if activity.type in AUTOMATIC_TYPES:
        raise CompletedAutomatically(
            f"a {activity.type} activity completes by itself when Laoke sees it happen "
            "(a favourite, a cart, a profile edit, an order), not on request"
        )
    rules = activities.rules_of(activity)
    now = clock.now()
    slot = activities.slot_now(activity, rules, program, now)
    if activity.type == "grab" and slot is not None:
        await _pool_left(session, activity, rules, slot)
    ledger = Ledger(session, outbox, shop_id, program)
    member = await ledger.member(body.customer_id)
    assert member is not None
    if activity.type != "referral":  # the inviter's eligibility counts, checked when the code is made
        await activities.check_eligible(settings, activity, rules, member)
    day = program.today(now)
    await activities.check_limits(session, activity, rules, member.customer_id, day)
    participation = Participation(
        id=new_id("ptc"),
        shop_id=shop_id,
        activity_id=activity.id,
        customer_id=member.customer_id,
        dedupe_key="",
        day=day,
        slot=slot,
        status="done",
        answer={},
        points_cost=0,
        points_awarded=0,
        created_at=now,
    )
    participation.dedupe_key = participation.id
    attributes: dict[str, str | list[str]] = {}
    if activity.type == "survey":
        attributes = _survey_answer(rules, body)
        participation.answer = {"answers": attributes}
    elif activity.type == "vote":
        options = [o.id for o in rules.options]
        if body.option not in options:
            raise InvalidAnswer(f"vote for one of {', '.join(options)}; got {body.option!r}")
        participation.answer = {"option": body.option}
        participation.dedupe_key = f"vote:{member.customer_id}"
    elif activity.type == "grab":
        if rules.passphrase is not None and body.passphrase != rules.passphrase:
            raise WrongPassphrase("wrong passphrase (口令)")
        participation.dedupe_key = f"grab:{member.customer_id}:{slot}"
    elif activity.type == "guess_price":
        if body.guess is None:
            raise InvalidAnswer("a price guess needs `guess`, in yuan")
        participation.answer = {"guess": str(body.guess)}
        participation.status = "guessed"
    elif activity.type == "referral":
        await _accept_invitation(session, settings, activity, member, participation, body.invite_code)
    if not await activities.record(session, participation):
        raise AlreadyTaken(f"member {member.customer_id} already took part in activity {activity.id}")
    if rules.cost_points:
        await ledger.debit(
            member, "redeem", rules.cost_points, f"activity_cost:{participation.id}", note=activity.title
        )
        participation.points_cost = rules.cost_points
    if activity.type == "grab":
        participation.status = "won"
    if participation.status in ("done", "won"):
        paid = await activities.take_reward(
            session, outbox, ledger, member, activity, rules, participation, claim_last=True
        )
        if not paid:
            raise BudgetExhausted(f"activity {activity.id} has given all its rewards")
        if participation.points_awarded or participation.coupon_code:
            participation.status = "rewarded" if activity.type != "grab" else "won"
    await _save(session, participation)
    if attributes:
        await outbox.add(
            session,
            topic=Topic.LOYALTY,
            event_type=CUSTOMER_ATTRIBUTES_UPDATED,
            shop_id=shop_id,
            key=event_key(shop_id, member.customer_id),
            payload=AttributesUpdatedPayload(
                customer_id=member.customer_id, attributes=attributes, source=f"activity:{activity.id}"
            ),
        )
    await activities.announce(session, outbox, activity, participation)
    await activity_tasks.took_part(session, outbox, settings, program, member, activity, now)
    if slot is not None and activity.type == "grab":
        # Last: the slot's row is what every grabber of the slot queues for.
        await _take_slot(session, activity, rules, slot)
    return participation


async def _save(session: AsyncSession, participation: Participation) -> None:
    """The row was inserted by `record`; write what settling it changed."""
    await session.execute(
        update(Participation)
        .where(Participation.shop_id == participation.shop_id, Participation.id == participation.id)
        .values(
            status=participation.status,
            points_cost=participation.points_cost,
            points_awarded=participation.points_awarded,
            coupon_code=participation.coupon_code,
            settled_at=participation.settled_at,
        )
    )


async def invitation(
    session: AsyncSession,
    settings: ServiceSettings,
    program: ProgramSettings,
    outbox: Outbox,
    activity_id: str,
    shop_id: str,
    customer_id: str,
) -> Invitation:
    """The member's invite code for a referral activity, made on first ask (eligibility checked then)."""
    activity = await activities.load(session, shop_id, activity_id)
    if activity.type != "referral":
        raise NotFound(f"activity {activity_id} is not a referral activity")
    existing = await session.scalar(
        select(Invitation).where(
            Invitation.shop_id == shop_id,
            Invitation.activity_id == activity_id,
            Invitation.customer_id == customer_id,
        )
    )
    if existing is not None:
        return existing
    rules = activities.rules_of(activity)
    activities.slot_now(activity, rules, program, clock.now())
    member = await Ledger(session, outbox, shop_id, program).member(customer_id)
    assert member is not None
    await activities.check_eligible(settings, activity, rules, member)
    facts = await activities.customer_facts(settings, shop_id, customer_id)
    while True:
        await session.execute(
            insert(Invitation)
            .values(
                shop_id=shop_id,
                activity_id=activity_id,
                customer_id=customer_id,
                code=coupons.new_code()[:8],
                mobile_hash=activities.mobile_hash(facts.mobile),
                created_at=clock.now(),
            )
            .on_conflict_do_nothing()
        )
        found = await session.scalar(
            select(Invitation).where(
                Invitation.shop_id == shop_id,
                Invitation.activity_id == activity_id,
                Invitation.customer_id == customer_id,
            )
        )
        if found is not None:  # none: the code was another member's (rare); draw again
            return found
