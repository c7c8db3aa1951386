"""Activities that complete from what Laoke sees happen, never on the buyer's word: favourite the shop or
an item, add to cart (behaviour events), complete the profile or register a birthday (segmentation's
profile edits), finish a task chain (those plus sign-in, an order or another activity), and the
referral an invitee's first completed order pays.

A task pays once per member (its participation's dedupe key is the member); a chain pays when its last
task is done within the window. Each reward runs under the member's lock, before the activity's row.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.contracts.orders import OrderEventPayload, OrderStatus
from laoke.kit import clock
from laoke.kit.ids import new_id
from laoke.kit.outbox import Outbox
from laoke.kit.settings import ServiceSettings
from services.loyalty import activities
from services.loyalty.activities import NotEligible
from services.loyalty.activity_schemas import ActivityRules, ChainTask
from services.loyalty.ledger import Ledger
from services.loyalty.models import Activity, Invitation, Member, Participation
from services.loyalty.program import ProgramSettings

PAID_STATUSES = {OrderStatus.PAID, OrderStatus.SHIPPED, OrderStatus.COMPLETED}


async def _live(session: AsyncSession, shop_id: str, types: tuple[str, ...], at: datetime) -> list[Activity]:
    return list(
        await session.scalars(
            select(Activity)
            .where(
                Activity.shop_id == shop_id,
                Activity.status == "live",
                Activity.type.in_(types),
                Activity.starts_at <= at,
                Activity.ends_at > at,
            )
            .order_by(Activity.created_at)
        )
    )


def _matches(task: ChainTask, kind: str, item_id: str | None, activity_id: str | None) -> bool:
    if task.type != kind:
        return False
    if task.item_id is not None and task.item_id != item_id:
        return False
    return task.activity_id is None or task.activity_id == activity_id


async def _eligible(
    settings: ServiceSettings, activity: Activity, rules: ActivityRules, member: Member
) -> bool:
    try:
        await activities.check_eligible(settings, activity, rules, member)
    except NotEligible:
        return False
    return True


async def _complete(
    session: AsyncSession,
    outbox: Outbox,
    settings: ServiceSettings,
    ledger: Ledger,
    member: Member,
    activity: Activity,
    at: datetime,
) -> None:
    """A one-time task done: recorded and rewarded once, however often the event arrives."""
    rules = activities.rules_of(activity)
    if not await _eligible(settings, activity, rules, member):
        return
    participation = _new(activity, member, ledger.program, at, dedupe_key=f"task:{member.customer_id}")
    if not await activities.record(session, participation):
        return  # done before: a task pays once
    paid = await activities.take_reward(session, outbox, ledger, member, activity, rules, participation)
    participation.status = "rewarded" if paid else "unrewarded"
    participation.note = None if paid else "the reward's stock or budget ran out"
    await _store(session, participation)
    await activities.announce(session, outbox, activity, participation)
    await took_part(session, outbox, settings, ledger.program, member, activity, at)


def _new(
    activity: Activity, member: Member, program: ProgramSettings, at: datetime, *, dedupe_key: str
) -> Participation:
    return Participation(
        id=new_id("ptc"),
        shop_id=activity.shop_id,
        activity_id=activity.id,
        customer_id=member.customer_id,
        dedupe_key=dedupe_key,
        day=program.today(at),
        status="done",
        answer={},
        points_cost=0,
        points_awarded=0,
        created_at=clock.now(),
    )


async def _store(session: AsyncSession, participation: Participation) -> None:
    stored = await session.get(Participation, participation.id, populate_existing=True)
    assert stored is not None
    for name in ("status", "note", "points_awarded", "coupon_code", "settled_at", "answer"):
        setattr(stored, name, getattr(participation, name))


async def _advance_chain(
    session: AsyncSession,
    outbox: Outbox,
    settings: ServiceSettings,
    ledger: Ledger,
    member: Member,
    chain: Activity,
    kind: str,
    item_id: str | None,
    activity_id: str | None,
    at: datetime,
) -> None:
    rules = activities.rules_of(chain)
    done_now = {i for i, task in enumerate(rules.tasks) if _matches(task, kind, item_id, activity_id)}
    if not done_now or not await _eligible(settings, chain, rules, member):
        return
    progress = _new(chain, member, ledger.program, at, dedupe_key=f"chain:{member.customer_id}")
    progress.status = "in_progress"
    progress.answer = {"done": []}
    await activities.record(session, progress)  # the member's row of this chain, made on the first task
    await session.flush()  # reloading below would drop progress made earlier in this transaction
    stored = await session.scalar(
        select(Participation)
        .where(
            Participation.shop_id == chain.shop_id,
            Participation.activity_id == chain.id,
            Participation.dedupe_key == progress.dedupe_key,
        )
        .execution_options(populate_existing=True)
    )
    assert stored is not None
    if stored.status != "in_progress":
        return  # finished before: the bonus pays once
    done = sorted(set(stored.answer.get("done", [])) | done_now)
    stored.answer = {"done": done}
    if len(done) < len(rules.tasks):
        return
    paid = await activities.take_reward(session, outbox, ledger, member, chain, rules, stored)
    stored.status = "rewarded" if paid else "unrewarded"
    stored.note = None if paid else "the reward's stock or budget ran out"
    await session.flush()
    await activities.announce(session, outbox, chain, stored)


async def happened(
    session: AsyncSession,
    outbox: Outbox,
    settings: ServiceSettings,
    program: ProgramSettings,
    shop_id: str,
    customer_id: str,
    kind: str,
    at: datetime,
    *,
    item_id: str | None = None,
    activity_id: str | None = None,
) -> None:
    """Something a task can be: `favorite_shop`, `favorite_item`, `add_to_cart`, `profile_completion`,
    `birthday_registration`, `signin`, `order`, `activity` (took part in `activity_id`)."""
    task_types = (
        (kind,)
        if kind
        in ("favorite_shop", "favorite_item", "add_to_cart", "profile_completion", "birthday_registration")
        else ()
    )
    live = await _live(session, shop_id, (*task_types, "task_chain"), at)
    if not live:
        return
    ledger = Ledger(session, outbox, shop_id, program)
    member = await ledger.member(customer_id)
    assert member is not None
    for activity in live:
        if activity.type == "task_chain":
            await _advance_chain(
                session, outbox, settings, ledger, member, activity, kind, item_id, activity_id, at
            )
            continue
        wanted_item = activities.rules_of(activity).item_id
        if wanted_item is None or wanted_item == item_id:
            await _complete(session, outbox, settings, ledger, member, activity, at)


async def took_part(
    session: AsyncSession,
    outbox: Outbox,
    settings: ServiceSettings,
    program: ProgramSettings,
    member: Member,
    activity: Activity,
    at: datetime,
) -> None:
    """Taking part in one activity can be a step of a chain."""
    chains = await _live(session, activity.shop_id, ("task_chain",), at)
    ledger = Ledger(session, outbox, activity.shop_id, program)
    for chain in chains:
        await _advance_chain(
            session, outbox, settings, ledger, member, chain, "activity", None, activity.id, at
        )


async def orders_changed(
    session: AsyncSession,
    outbox: Outbox,
    settings: ServiceSettings,
    program: ProgramSettings,
    shop_id: str,
    orders: list[OrderEventPayload],
) -> None:
    """After a run of order events: a paid order is a chain's `order` task; an invitee's completed order
    pays their inviter (unless the order's phone is the inviter's)."""
    chains = await session.scalar(
        select(Activity.id)
        .where(Activity.shop_id == shop_id, Activity.status == "live", Activity.type == "task_chain")
        .limit(1)
    )
    for order in orders if chains else ():
        if order.status in PAID_STATUSES and order.previous_status not in PAID_STATUSES and order.paid_at:
            await happened(
                session, outbox, settings, program, shop_id, order.customer_id, "order", order.paid_at
            )
    completed = [o for o in orders if o.status == OrderStatus.COMPLETED]
    if completed:
        await _pay_referrals(session, outbox, program, shop_id, completed)


async def _pay_referrals(
    session: AsyncSession,
    outbox: Outbox,
    program: ProgramSettings,
    shop_id: str,
    orders: list[OrderEventPayload],
) -> None:
    by_invitee = {o.customer_id: o for o in orders}
    pending = list(
        await session.scalars(
            select(Participation)
            .where(
                Participation.shop_id == shop_id,
                Participation.customer_id.in_(by_invitee),
                Participation.inviter_id.is_not(None),
                Participation.status == "pending",
            )
            .order_by(Participation.inviter_id)
        )
    )
    ledger = Ledger(session, outbox, shop_id, program)
    for referral in pending:
        activity = await activities.load(session, shop_id, referral.activity_id)
        order = by_invitee[referral.customer_id]
        inviter_phone = await session.scalar(
            select(Invitation.mobile_hash).where(
                Invitation.shop_id == shop_id,
                Invitation.activity_id == activity.id,
                Invitation.customer_id == referral.inviter_id,
            )
        )
        order_phone = activities.mobile_hash(order.buyer.mobile if order.buyer else None)
        if order_phone is not None and order_phone == inviter_phone:
            referral.status, referral.note = "blocked", "the invitee's order has the inviter's phone number"
            continue
        assert referral.inviter_id is not None
        inviter = await ledger.member(referral.inviter_id)
        assert inviter is not None
        rules = activities.rules_of(activity)
        paid = await activities.take_reward(session, outbox, ledger, inviter, activity, rules, referral)
        referral.status = "rewarded" if paid else "unrewarded"
        referral.note = f"first order {order.order_id} completed" + ("" if paid else "; the budget ran out")
        await activities.announce(session, outbox, activity, referral)
