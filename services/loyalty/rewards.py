"""Redeeming points for rewards (积分兑换) and drawing lotteries (抽奖): all or nothing, never oversold.

Both run in one transaction under the member's lock. Stock is taken with a conditional UPDATE
(`stock > 0`), so concurrent redemptions of different members can never take more than there is.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import bindparam, case, func, insert, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from laoke.kit import clock
from laoke.kit.errors import Conflict, NotFound, Unprocessable
from laoke.kit.ids import new_id
from laoke.kit.outbox import Outbox
from services.loyalty import coupons
from services.loyalty.ledger import LOCK_MEMBER, InsufficientPoints, Ledger
from services.loyalty.models import Lottery, LotteryDraw, LotteryPrize, Member, Redemption, Reward
from services.loyalty.program import ProgramSettings

# Written once and never changed: a Core insert, without the ORM's unit of work (docs/architecture.md).
_RECORD_REDEMPTION = insert(Redemption.__table__)
# A redemption's reward, and its member locked (only when the reward exists), in one round trip: each
# statement costs loyalty more CPU than PostgreSQL spends on it.
_MEMBER = LOCK_MEMBER.subquery("member")
_REWARD_AND_MEMBER = (
    select(Reward, aliased(Member, _MEMBER))
    .outerjoin(_MEMBER, true())
    .where(Reward.shop_id == bindparam("shop_id"), Reward.id == bindparam("reward_id"))
    .execution_options(populate_existing=True)
)
_REDEEMED_BY_MEMBER = select(func.count()).where(
    Redemption.shop_id == bindparam("shop_id"),
    Redemption.customer_id == bindparam("customer_id"),
    Redemption.reward_id == bindparam("reward_id"),
    Redemption.status != "cancelled",
)
# Bound as `shop`, not `shop_id`: an UPDATE reserves its columns' names for the values it sets.
_TAKE_STOCK = (
    update(Reward)
    .where(Reward.shop_id == bindparam("shop"), Reward.id == bindparam("reward_id"), Reward.stock > 0)
    .values(stock=Reward.stock - 1, updated_at=func.now())
    .returning(Reward.id)
)


class OutOfStock(Conflict):
    code = "out_of_stock"


class LimitReached(Conflict):
    code = "limit_reached"


class TierTooLow(Unprocessable):
    code = "tier_too_low"


class NotPending(Conflict):
    code = "not_pending"


class LotteryStopped(Conflict):
    code = "lottery_stopped"


async def existing_member(ledger: Ledger, customer_id: str) -> Member:
    member = await ledger.member(customer_id, create=False)
    if member is None:
        raise NotFound(f"member {customer_id} not found")
    return member


async def _reward_and_member(ledger: Ledger, reward_id: str, customer_id: str) -> tuple[Reward, Member]:
    """The reward, and the member locked for this transaction, in one round trip."""
    await ledger.session.flush()
    params = {"shop_id": ledger.shop_id, "reward_id": reward_id, "customer_id": customer_id}
    found = (await ledger.session.execute(_REWARD_AND_MEMBER, params)).first()
    if found is None or not found[0].active:
        raise NotFound(f"reward {reward_id} not found")
    if found[1] is None:
        raise NotFound(f"member {customer_id} not found")
    return found[0], found[1]


async def redeem(
    session: AsyncSession,
    outbox: Outbox,
    shop_id: str,
    program: ProgramSettings,
    customer_id: str,
    reward_id: str,
) -> tuple[Redemption, int]:
    """The redemption, and the member's balance after it."""
    # Batched: the member's new balance, the redemption and the points event go out in one flush.
    ledger = Ledger(session, outbox, shop_id, program, batched=True)
    reward, member = await _reward_and_member(ledger, reward_id, customer_id)
    if member.tier_level < reward.min_tier_level:
        raise TierTooLow(
            f"reward {reward_id} needs tier level {reward.min_tier_level}; member has {member.tier_level}"
        )
    if reward.per_member_limit is not None:
        taken = await session.scalar(
            _REDEEMED_BY_MEMBER, {"shop_id": shop_id, "customer_id": customer_id, "reward_id": reward_id}
        )
        if (taken or 0) >= reward.per_member_limit:
            raise LimitReached(f"member {customer_id} has redeemed reward {reward_id} {taken} times (limit)")
    if member.points_balance < reward.points_cost:
        # Checked before the stock so a member short of points never holds stock even for a moment.
        raise InsufficientPoints(
            f"reward {reward_id} costs {reward.points_cost} points; member has {member.points_balance}"
        )
    redemption_id = new_id("rdm")
    await ledger.debit(member, "redeem", reward.points_cost, f"redemption:{redemption_id}", note=reward.name)
    code = None
    if reward.kind == "coupon" and reward.coupon_template_id:
        await ledger.write()  # the points event before the coupon's, as they happened
        template = await coupons.load_template(session, shop_id, reward.coupon_template_id, lock=True)
        issued, _ = await coupons.issue(session, outbox, template, [customer_id], source="redemption")
        code = issued.get(customer_id)
        if code is None:  # the member holds as many of these coupons as the template allows
            raise LimitReached(
                f"member {customer_id} holds the most coupons of template {template.id} allowed "
                f"({template.per_customer_limit})"
            )
    redemption = Redemption(
        id=redemption_id,
        shop_id=shop_id,
        customer_id=customer_id,
        reward_id=reward_id,
        points=reward.points_cost,
        cash_fen=reward.cash_fen,
        coupon_code=code,
        status="fulfilled" if code else "pending",
        note=None,
        created_at=clock.now(),
        updated_at=None,
    )
    await session.execute(
        _RECORD_REDEMPTION,
        {column.key: getattr(redemption, column.key) for column in Redemption.__table__.columns},
    )
    await ledger.write()
    if reward.stock is not None:
        # Taken last: the reward row is shared by every member redeeming it, so its lock is held for
        # as short a time as possible. Out of stock rolls the whole redemption back.
        stocked = await session.execute(_TAKE_STOCK, {"shop": shop_id, "reward_id": reward_id})
        if stocked.first() is None:
            raise OutOfStock(f"reward {reward_id} is out of stock")
    return redemption, member.points_balance


async def settle(
    session: AsyncSession,
    outbox: Outbox,
    shop_id: str,
    program: ProgramSettings,
    redemption_id: str,
    new_status: str,
    note: str | None,
) -> Redemption:
    """A pending redemption sent (`fulfilled`) or called off (`cancelled`: its points come back as a
    new lot and its stock to the reward). Asking for the status it has already changes nothing, so a
    retry is safe; anything else from a settled redemption is a 409."""
    ledger = Ledger(session, outbox, shop_id, program)
    found = await session.scalar(
        select(Redemption.customer_id).where(Redemption.shop_id == shop_id, Redemption.id == redemption_id)
    )
    if found is None:
        raise NotFound(f"redemption {redemption_id} not found")
    member = await existing_member(ledger, found)  # the member first, as every ledger change locks
    redemption = await session.scalar(
        select(Redemption)
        .where(Redemption.shop_id == shop_id, Redemption.id == redemption_id)
        .with_for_update()
    )
    assert redemption is not None  # redemptions are never deleted
    if redemption.status == new_status:
        return redemption
    if redemption.status != "pending":
        raise NotPending(f"redemption {redemption_id} is {redemption.status} already")
    if new_status == "cancelled":
        reward = await session.scalar(
            select(Reward)
            .where(Reward.shop_id == shop_id, Reward.id == redemption.reward_id)
            .with_for_update()
        )
        await ledger.credit(
            member,
            "adjust",
            redemption.points,
            f"redemption:{redemption.id}",
            note=f"redemption cancelled: {reward.name if reward else redemption.reward_id}",
        )
        if reward is not None and reward.stock is not None:
            reward.stock += 1
            reward.updated_at = clock.now()
    redemption.status, redemption.note, redemption.updated_at = new_status, note, clock.now()
    await session.flush()
    return redemption


@dataclass(frozen=True)
class DrawResult:
    draw: LotteryDraw
    prize: LotteryPrize | None


def pick(prizes: list[LotteryPrize], roll: Decimal) -> LotteryPrize | None:
    """The prize whose probability band holds `roll` (in [0, 1)); beyond the bands, no prize."""
    edge = Decimal(0)
    for prize in sorted(prizes, key=lambda p: p.position):
        edge += prize.probability
        if roll < edge:
            return prize
    return None


async def draw(
    session: AsyncSession,
    outbox: Outbox,
    shop_id: str,
    program: ProgramSettings,
    lottery_id: str,
    customer_id: str,
) -> DrawResult:
    lottery = await session.scalar(
        select(Lottery).where(Lottery.shop_id == shop_id, Lottery.id == lottery_id).with_for_update()
    )
    if lottery is None:
        raise NotFound(f"lottery {lottery_id} not found")
    if not lottery.active:
        raise LotteryStopped(f"lottery {lottery_id} is stopped")
    ledger = Ledger(session, outbox, shop_id, program)
    member = await existing_member(ledger, customer_id)
    today = program.today(clock.now())
    free_used = await session.scalar(
        select(func.count()).where(
            LotteryDraw.shop_id == shop_id,
            LotteryDraw.lottery_id == lottery_id,
            LotteryDraw.customer_id == customer_id,
            LotteryDraw.day == today,
            LotteryDraw.free,
        )
    )
    free = (free_used or 0) < lottery.free_draws_per_day
    draw_id = new_id("drw")
    cost = 0 if free else lottery.cost_points
    if cost:
        await ledger.debit(member, "redeem", cost, f"draw:{draw_id}", note=f"lottery {lottery.name}")
    prizes = list(
        await session.scalars(
            select(LotteryPrize).where(LotteryPrize.shop_id == shop_id, LotteryPrize.lottery_id == lottery_id)
        )
    )
    # Six decimal places of probability; the system's CSPRNG, so nobody can predict a draw.
    prize = pick(prizes, Decimal(secrets.randbelow(1_000_000)) / 1_000_000)
    template = None
    if prize is not None and prize.coupon_template_id:
        template = await coupons.load_template(session, shop_id, prize.coupon_template_id, lock=True)
        if not await coupons.can_issue(session, template, customer_id):
            # A coupon that cannot be issued (ended, used up, the member at its limit) wins nothing,
            # as a prize out of stock does: never a prize recorded without its coupon, never a failed draw.
            prize = None
    if prize is not None:
        prize = await _take_prize(session, lottery, prize)
    record = LotteryDraw(
        id=draw_id,
        shop_id=shop_id,
        lottery_id=lottery_id,
        customer_id=customer_id,
        day=today,
        free=free,
        cost_points=cost,
        prize_id=prize.id if prize else None,
        points_awarded=0,
        drawn_at=clock.now(),
    )
    if prize is not None and prize.points:
        await ledger.credit(
            member, "bonus", prize.points, f"draw:{draw_id}", note=f"lottery prize {prize.name}"
        )
        record.points_awarded = prize.points
    if prize is not None and template is not None:
        issued, _ = await coupons.issue(session, outbox, template, [customer_id], source="lottery")
        record.coupon_code = issued[customer_id]
    session.add(record)
    await session.flush()
    return DrawResult(record, prize)


async def _take_prize(session: AsyncSession, lottery: Lottery, prize: LotteryPrize) -> LotteryPrize | None:
    """The prize if its stock and the lottery's points budget allow; otherwise the draw wins nothing.
    The lottery row is locked, so budget and stock checks cannot race."""
    over_budget = (
        prize.points
        and lottery.points_budget is not None
        and lottery.points_awarded + prize.points > lottery.points_budget
    )
    if over_budget:
        return None
    taken = await session.execute(
        update(LotteryPrize)
        .where(LotteryPrize.id == prize.id, (LotteryPrize.stock.is_(None)) | (LotteryPrize.stock > 0))
        .values(
            stock=case((LotteryPrize.stock.is_(None), None), else_=LotteryPrize.stock - 1),
            awarded_count=LotteryPrize.awarded_count + 1,
        )
        .returning(LotteryPrize.id)
    )
    if taken.first() is None:
        return None
    if prize.points:
        lottery.points_awarded += prize.points
    await session.refresh(prize)  # its stock and count changed in the database
    return prize
