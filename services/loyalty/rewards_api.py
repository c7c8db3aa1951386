"""Rewards (积分兑换), redemptions and lotteries (抽奖)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status
from sqlalchemy import func, select

from laoke.kit import clock
from laoke.kit.db import ReadSessionDep, SessionDep
from laoke.kit.errors import ERROR_RESPONSES, Conflict, NotFound, Unprocessable
from laoke.kit.idempotency import IdempotencyKeyHeader, run_idempotent
from laoke.kit.ids import new_id
from laoke.kit.jsonutil import dumps
from laoke.kit.money import from_fen, to_fen
from laoke.kit.paging import newest_first, split_page
from laoke.kit.service import CallerDep, OutboxDep
from services.loyalty import coupons, program, rewards
from services.loyalty.models import (
    Lottery,
    LotteryDraw,
    LotteryPrize,
    Member,
    Redemption,
    Reward,
    idempotency_keys,
)
from services.loyalty.schemas import (
    DrawIn,
    DrawOut,
    LotteryIn,
    LotteryList,
    LotteryOut,
    LotteryPatch,
    PrizeOut,
    RedemptionIn,
    RedemptionList,
    RedemptionOut,
    RedemptionPatch,
    RedemptionRecord,
    RedemptionStatus,
    RewardIn,
    RewardList,
    RewardOut,
    RewardPatch,
)

router = APIRouter(prefix="/api/v1/loyalty", tags=["rewards and lotteries"], responses=ERROR_RESPONSES)


async def _reward_out(session: SessionDep, reward: Reward) -> RewardOut:
    # Counted, not stored: a counter on the reward row would make every redemption of it queue.
    redeemed = await session.scalar(
        select(func.count()).where(
            Redemption.shop_id == reward.shop_id,
            Redemption.reward_id == reward.id,
            Redemption.status != "cancelled",
        )
    )
    return RewardOut(
        id=reward.id,
        name=reward.name,
        description=reward.description,
        kind=reward.kind,  # type: ignore[arg-type]
        points_cost=reward.points_cost,
        cash=from_fen(reward.cash_fen),
        stock=reward.stock,
        redeemed_count=redeemed or 0,
        min_tier_level=reward.min_tier_level,
        per_member_limit=reward.per_member_limit,
        coupon_template_id=reward.coupon_template_id,
        active=reward.active,
    )


async def _reward(session: SessionDep, shop_id: str, reward_id: str) -> Reward:
    reward = await session.scalar(select(Reward).where(Reward.shop_id == shop_id, Reward.id == reward_id))
    if reward is None:
        raise NotFound(f"reward {reward_id} not found")
    return reward


@router.post(
    "/rewards", response_model=RewardOut, status_code=status.HTTP_201_CREATED, summary="Add a reward"
)
async def create_reward(body: RewardIn, caller: CallerDep, session: SessionDep) -> RewardOut:
    if body.coupon_template_id:
        await coupons.load_template(session, caller.shop_id, body.coupon_template_id)
    reward = Reward(
        id=new_id("rwd"),
        shop_id=caller.shop_id,
        name=body.name,
        description=body.description,
        kind=body.kind,
        points_cost=body.points_cost,
        cash_fen=to_fen(body.cash),
        stock=body.stock,
        min_tier_level=body.min_tier_level,
        per_member_limit=body.per_member_limit,
        coupon_template_id=body.coupon_template_id,
        active=True,
    )
    session.add(reward)
    await session.flush()
    return await _reward_out(session, reward)


@router.get("/rewards", response_model=RewardList, summary="The rewards catalogue")
async def list_rewards(caller: CallerDep, session: ReadSessionDep) -> RewardList:
    rows = await session.scalars(
        select(Reward).where(Reward.shop_id == caller.shop_id).order_by(Reward.created_at)
    )
    return RewardList(items=[await _reward_out(session, r) for r in rows])


@router.get("/rewards/{reward_id}", response_model=RewardOut, summary="A reward")
async def get_reward(reward_id: str, caller: CallerDep, session: ReadSessionDep) -> RewardOut:
    return await _reward_out(session, await _reward(session, caller.shop_id, reward_id))


@router.patch(
    "/rewards/{reward_id}", response_model=RewardOut, summary="Change a reward (stock, cost, on/off)"
)
async def patch_reward(
    reward_id: str, body: RewardPatch, caller: CallerDep, session: SessionDep
) -> RewardOut:
    reward = await _reward(session, caller.shop_id, reward_id)
    for name, value in body.model_dump(exclude_unset=True).items():
        setattr(reward, name, value)
    reward.updated_at = clock.now()
    await session.flush()
    return await _reward_out(session, reward)


@router.post(
    "/members/{customer_id}/redemptions",
    response_model=RedemptionOut,
    status_code=status.HTTP_201_CREATED,
    summary="Redeem points for a reward",
    description="Atomic: points, stock, tier and per-member limit are checked and taken together. Errors: "
    "409 `insufficient_points`, 409 `out_of_stock`, 409 `limit_reached`, 422 `tier_too_low`. Send an "
    "`Idempotency-Key` so a retried request never redeems twice.",
)
async def redeem(
    customer_id: str,
    body: RedemptionIn,
    caller: CallerDep,
    session: SessionDep,
    outbox: OutboxDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    async def work() -> tuple[int, bytes]:
        settings = await program.load(session, caller.shop_id)
        done, balance = await rewards.redeem(
            session, outbox, caller.shop_id, settings, customer_id, body.reward_id
        )
        out = RedemptionOut(
            id=done.id,
            reward_id=done.reward_id,
            points=done.points,
            cash=from_fen(done.cash_fen),
            coupon_code=done.coupon_code,
            status=done.status,  # type: ignore[arg-type]
            points_available=balance,
            created_at=done.created_at,
        )
        return status.HTTP_201_CREATED, dumps(out.model_dump(mode="json"))

    return await run_idempotent(idempotency_keys, session, caller.shop_id, idempotency_key, body, work)


def _record(redemption: Redemption, reward: Reward) -> RedemptionRecord:
    return RedemptionRecord(
        id=redemption.id,
        customer_id=redemption.customer_id,
        reward_id=redemption.reward_id,
        reward_name=reward.name,
        kind=reward.kind,  # type: ignore[arg-type]
        points=redemption.points,
        cash=from_fen(redemption.cash_fen),
        coupon_code=redemption.coupon_code,
        status=redemption.status,  # type: ignore[arg-type]
        note=redemption.note,
        created_at=redemption.created_at,
        updated_at=redemption.updated_at,
    )


@router.get(
    "/redemptions",
    response_model=RedemptionList,
    summary="Redemptions, newest first: the gifts to send (`status=pending`), a member's, a reward's",
)
async def list_redemptions(
    caller: CallerDep,
    session: ReadSessionDep,
    status: RedemptionStatus | None = None,
    reward_id: Annotated[str | None, Query(max_length=32)] = None,
    customer_id: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[
        str | None, Query(max_length=200, description="`next_cursor` of the page before")
    ] = None,
) -> RedemptionList:
    query = (
        select(Redemption, Reward)
        .join(Reward, (Reward.shop_id == Redemption.shop_id) & (Reward.id == Redemption.reward_id))
        .where(Redemption.shop_id == caller.shop_id)
    )
    if status is not None:
        query = query.where(Redemption.status == status)
    if reward_id is not None:
        query = query.where(Redemption.reward_id == reward_id)
    if customer_id is not None:
        query = query.where(Redemption.customer_id == customer_id)
    query = newest_first(query, Redemption.created_at, Redemption.id, limit, cursor)
    rows, next_cursor = split_page(
        list(await session.execute(query)), limit, lambda row: (row[0].created_at, row[0].id)
    )
    return RedemptionList(
        items=[_record(redemption, reward) for redemption, reward in rows], next_cursor=next_cursor
    )


@router.patch(
    "/redemptions/{redemption_id}",
    response_model=RedemptionRecord,
    summary="Mark a gift sent, or call a redemption off (its points and stock come back)",
    description="From `pending` only: `fulfilled` with, say, the tracking number as `note`, or `cancelled` "
    "(the points return to the member as an `adjust` entry, a new lot; the stock returns to the reward). "
    "Asking again for the status it has is a no-op; a settled redemption is a 409 `not_pending`.",
)
async def settle_redemption(
    redemption_id: Annotated[str, Path(max_length=32)],
    body: RedemptionPatch,
    caller: CallerDep,
    session: SessionDep,
    outbox: OutboxDep,
) -> RedemptionRecord:
    settings = await program.load(session, caller.shop_id)
    redemption = await rewards.settle(
        session, outbox, caller.shop_id, settings, redemption_id, body.status, body.note
    )
    return _record(redemption, await _reward(session, caller.shop_id, redemption.reward_id))


def _prize_out(prize: LotteryPrize) -> PrizeOut:
    return PrizeOut(
        id=prize.id,
        name=prize.name,
        probability=prize.probability,
        stock=prize.stock,
        awarded=prize.awarded_count,
        points=prize.points,
        coupon_template_id=prize.coupon_template_id,
    )


async def _lottery_out(session: SessionDep, lottery: Lottery) -> LotteryOut:
    prizes = await session.scalars(
        select(LotteryPrize)
        .where(LotteryPrize.shop_id == lottery.shop_id, LotteryPrize.lottery_id == lottery.id)
        .order_by(LotteryPrize.position)
    )
    draws = await session.scalar(
        select(func.count()).where(
            LotteryDraw.shop_id == lottery.shop_id, LotteryDraw.lottery_id == lottery.id
        )
    )
    return LotteryOut(
        id=lottery.id,
        name=lottery.name,
        cost_points=lottery.cost_points,
        free_draws_per_day=lottery.free_draws_per_day,
        points_budget=lottery.points_budget,
        points_awarded=lottery.points_awarded,
        active=lottery.active,
        prizes=[_prize_out(p) for p in prizes],
        draws=draws or 0,
    )


@router.post(
    "/lotteries",
    response_model=LotteryOut,
    status_code=status.HTTP_201_CREATED,
    summary="Create a lottery (抽奖)",
    description="Prizes are points or a coupon, each with a probability (together at most 1; the rest wins "
    "nothing) and optional stock; `points_budget` caps the points all prizes may pay.",
)
async def create_lottery(body: LotteryIn, caller: CallerDep, session: SessionDep) -> LotteryOut:
    for prize in body.prizes:
        if prize.coupon_template_id:
            await coupons.load_template(session, caller.shop_id, prize.coupon_template_id)
    lottery = Lottery(
        id=new_id("lot"),
        shop_id=caller.shop_id,
        name=body.name,
        cost_points=body.cost_points,
        free_draws_per_day=body.free_draws_per_day,
        points_budget=body.points_budget,
        points_awarded=0,
        active=True,
    )
    session.add(lottery)
    for position, prize in enumerate(body.prizes):
        session.add(
            LotteryPrize(
                id=new_id("prz"),
                shop_id=caller.shop_id,
                lottery_id=lottery.id,
                name=prize.name,
                probability=prize.probability,
                stock=prize.stock,
                awarded_count=0,
                points=prize.points,
                coupon_template_id=prize.coupon_template_id,
                position=position,
            )
        )
    await session.flush()
    return await _lottery_out(session, lottery)


@router.get("/lotteries", response_model=LotteryList, summary="The shop's lotteries with their draw stats")
async def list_lotteries(caller: CallerDep, session: SessionDep) -> LotteryList:
    rows = await session.scalars(
        select(Lottery).where(Lottery.shop_id == caller.shop_id).order_by(Lottery.created_at)
    )
    return LotteryList(items=[await _lottery_out(session, lottery) for lottery in rows])


@router.get("/lotteries/{lottery_id}", response_model=LotteryOut, summary="A lottery with its draw stats")
async def get_lottery(lottery_id: str, caller: CallerDep, session: SessionDep) -> LotteryOut:
    lottery = await session.scalar(
        select(Lottery).where(Lottery.shop_id == caller.shop_id, Lottery.id == lottery_id)
    )
    if lottery is None:
        raise NotFound(f"lottery {lottery_id} not found")
    return await _lottery_out(session, lottery)


@router.patch(
    "/lotteries/{lottery_id}",
    response_model=LotteryOut,
    summary="Stop or restart a lottery, rename it, change its cost, free draws or budget, restock prizes",
    description="A field left out keeps its value. `active: false` stops it (draws answer 409 "
    "`lottery_stopped`); `points_budget` not below the points already awarded (409); a prize's `stock` is "
    "what is left to win from now on. The prizes and their odds stay as created.",
)
async def patch_lottery(
    lottery_id: Annotated[str, Path(max_length=32)],
    body: LotteryPatch,
    caller: CallerDep,
    session: SessionDep,
) -> LotteryOut:
    # Locked as a draw locks it: a budget checked against points a draw is awarding meanwhile.
    lottery = await session.scalar(
        select(Lottery).where(Lottery.shop_id == caller.shop_id, Lottery.id == lottery_id).with_for_update()
    )
    if lottery is None:
        raise NotFound(f"lottery {lottery_id} not found")
    changes = body.model_dump(exclude_unset=True)
    budget = changes.get("points_budget")
    if budget is not None and budget < lottery.points_awarded:
        raise Conflict(f"points_budget cannot go below what was already awarded ({lottery.points_awarded})")
    restocked = {prize["id"]: prize["stock"] for prize in changes.pop("prizes", [])}
    if restocked:
        prizes = {
            prize.id: prize
            for prize in await session.scalars(
                select(LotteryPrize).where(
                    LotteryPrize.shop_id == caller.shop_id,
                    LotteryPrize.lottery_id == lottery_id,
                    LotteryPrize.id.in_(restocked),
                )
            )
        }
        if unknown := sorted(set(restocked) - set(prizes)):
            raise Unprocessable(f"prizes: {', '.join(unknown)} not a prize of lottery {lottery_id}")
        for prize_id, stock in restocked.items():
            prizes[prize_id].stock = stock
    for name, value in changes.items():
        setattr(lottery, name, value)
    await session.flush()
    return await _lottery_out(session, lottery)


@router.post(
    "/lotteries/{lottery_id}/draws",
    response_model=DrawOut,
    status_code=status.HTTP_201_CREATED,
    summary="Draw once",
    description="Uses a free draw of the shop-local day if one is left, otherwise costs `cost_points` "
    "(409 `insufficient_points`); a stopped lottery is 409 `lottery_stopped`. A prize out of stock or "
    "beyond the points budget wins nothing. Every draw is recorded.",
)
async def draw(
    lottery_id: str,
    body: DrawIn,
    caller: CallerDep,
    session: SessionDep,
    outbox: OutboxDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    async def work() -> tuple[int, bytes]:
        settings = await program.load(session, caller.shop_id)
        result = await rewards.draw(session, outbox, caller.shop_id, settings, lottery_id, body.customer_id)
        balance = await session.scalar(
            select(Member.points_balance).where(
                Member.shop_id == caller.shop_id, Member.customer_id == body.customer_id
            )
        )
        out = DrawOut(
            id=result.draw.id,
            free=result.draw.free,
            cost_points=result.draw.cost_points,
            won=result.prize is not None,
            prize=_prize_out(result.prize) if result.prize else None,
            points_awarded=result.draw.points_awarded,
            coupon_code=result.draw.coupon_code,
            points_available=int(balance or 0),
        )
        return status.HTTP_201_CREATED, dumps(out.model_dump(mode="json"))

    return await run_idempotent(idempotency_keys, session, caller.shop_id, idempotency_key, body, work)
