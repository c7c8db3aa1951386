"""Points and tiers from orders.

Each order event carries the order's whole state. We keep the newest state per order (an older
snapshot arriving late, say a `completed` after its refund, changes nothing) and bring the points the
order holds to what that state deserves:

| state | available | pending |
|---|---|---|
| completed (also when later partly or fully refunded) | points for paid − refunded | 0 |
| paid / shipped, programme credits on `paid` | 0 | points for paid − refunded |
| anything else (created, closed, refunded before completion) | 0 | 0 |

The difference becomes ledger entries: `pending`, `release` (pending → available on completion),
`earn`, `reverse` (a refund takes back its share, once, however often it is delivered). So points are
always proportional to the money the shop kept, and replays are harmless.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.contracts.orders import OrderEventPayload, OrderStatus
from laoke.kit import clock
from laoke.kit.outbox import Outbox
from services.loyalty import coupons
from services.loyalty.ledger import Ledger
from services.loyalty.models import LoyaltyOrder, Member
from services.loyalty.program import ProgramSettings

_HOLDING = frozenset({OrderStatus.PAID, OrderStatus.SHIPPED, OrderStatus.PARTIALLY_REFUNDED})
_AFTER_COMPLETION = frozenset({OrderStatus.COMPLETED, OrderStatus.REFUNDED, OrderStatus.PARTIALLY_REFUNDED})


def deserved(program: ProgramSettings, row: LoyaltyOrder) -> tuple[int, int]:
    """(available, pending) points the order deserves in its current state."""
    status = OrderStatus(row.status)
    points = program.points_for(row.paid_fen - row.refunded_fen)
    if row.completed and status in _AFTER_COMPLETION:
        return points, 0
    if program.credit_on == "paid" and status in _HOLDING:
        return 0, points
    return 0, 0


async def apply_order(
    session: AsyncSession, outbox: Outbox, shop_id: str, order: OrderEventPayload, program: ProgramSettings
) -> None:
    ledger = Ledger(session, outbox, shop_id, program)
    member = await ledger.member(order.customer_id)
    assert member is not None
    row = await session.scalar(
        select(LoyaltyOrder)
        .where(LoyaltyOrder.shop_id == shop_id, LoyaltyOrder.order_id == order.order_id)
        .with_for_update()
    )
    if row is not None and order.source_modified_at < row.source_modified_at:
        return  # an older state of the order, arriving late
    if row is None:
        row = LoyaltyOrder(
            shop_id=shop_id,
            order_id=order.order_id,
            customer_id=order.customer_id,
            completed=False,
            points_available=0,
            points_pending=0,
        )
        session.add(row)
    row.customer_id = order.customer_id
    row.status = order.status.value
    row.paid_fen = order.paid_fen
    row.refunded_fen = order.refunded_fen
    row.placed_at = order.placed_at
    row.source_modified_at = order.source_modified_at
    row.completed = row.completed or order.status == OrderStatus.COMPLETED or order.completed_at is not None
    await settle(ledger, member, row)
    await session.flush()  # a later event of the same order in this run must find this state
    if order.coupon_codes and order.status in (*_HOLDING, OrderStatus.COMPLETED):
        await coupons.redeem_codes(session, outbox, shop_id, order)
    await update_tier(session, ledger, member)


async def settle(ledger: Ledger, member: Member, row: LoyaltyOrder) -> None:
    """Book the entries that take the order from the points it holds to the points it deserves."""
    available, pending = deserved(ledger.program, row)
    ref = f"order:{row.order_id}"
    # Completion turns what was pending into available points.
    if row.points_pending and not pending and available > row.points_available:
        move = min(row.points_pending, available - row.points_available)
        await ledger.credit(member, "release", move, ref, pending=-move)
        row.points_pending -= move
        row.points_available += move
    if available > row.points_available:
        first = row.points_available == 0
        await ledger.credit(
            member, "earn", available - row.points_available, ref if first else f"{ref}@{available}"
        )
    elif available < row.points_available:
        await ledger.debit(
            member,
            "reverse",
            row.points_available - available,
            f"{ref}:kept:{available}",
            note=f"refund: order now keeps {available} points",
            partial=True,
        )
    row.points_available = available
    if pending > row.points_pending:
        first = row.points_pending == 0
        await ledger.pending(
            member, pending - row.points_pending, "pending", ref if first else f"{ref}@{pending}"
        )
    elif pending < row.points_pending:
        await ledger.pending(member, pending - row.points_pending, "reverse", f"{ref}:pending:{pending}")
    row.points_pending = pending


async def update_tier(session: AsyncSession, ledger: Ledger, member: Member) -> None:
    """The tier the member's completed orders reach (within the re-evaluation window, if any); never
    lower than the current one unless the programme allows downgrades."""
    program = ledger.program
    if not program.tiers:
        return
    spend, count = await progress(session, program, member)
    level = program.level_for(spend, count)
    if program.never_downgrade:
        level = max(level, member.tier_level)
    await ledger.set_tier(member, level)


async def progress(session: AsyncSession, program: ProgramSettings, member: Member) -> tuple[int, int]:
    """(qualifying spend in fen, qualifying orders) as tiers count them now."""
    conditions = [
        LoyaltyOrder.shop_id == member.shop_id,
        LoyaltyOrder.customer_id == member.customer_id,
        LoyaltyOrder.completed,
        LoyaltyOrder.paid_fen > LoyaltyOrder.refunded_fen,
    ]
    if program.reevaluation_days:
        conditions.append(LoyaltyOrder.placed_at >= clock.now() - timedelta(days=program.reevaluation_days))
    spend, count = (
        await session.execute(
            select(
                func.coalesce(func.sum(LoyaltyOrder.paid_fen - LoyaltyOrder.refunded_fen), 0), func.count()
            ).where(*conditions)
        )
    ).one()
    return int(spend), int(count)
