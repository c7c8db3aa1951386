"""Every query of the loyalty service. All of them are scoped by shop."""

from __future__ import annotations

from sqlalchemy import bindparam, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.loyalty.models import Member, PointsEntry

_ledger = PointsEntry.__table__
_members = Member.__table__

# Built once; values are bound per call (see services/ingest/repository.py for why).
_BOOK_ENTRY = insert(_ledger).on_conflict_do_nothing().returning(_ledger.c.id)
_member_insert = insert(_members)
_MOVE_BALANCE = _member_insert.on_conflict_do_update(
    index_elements=[_members.c.shop_id, _members.c.customer_id],
    set_={
        "points_balance": _members.c.points_balance + _member_insert.excluded.points_balance,
        "lifetime_earned": _members.c.lifetime_earned + _member_insert.excluded.lifetime_earned,
        "updated_at": _member_insert.excluded.updated_at,
    },
).returning(_members.c.points_balance)
_GET_MEMBER = select(Member).where(
    Member.shop_id == bindparam("shop_id"), Member.customer_id == bindparam("customer_id")
)


class MemberRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, shop_id: str, customer_id: str) -> Member | None:
        return await self.session.scalar(_GET_MEMBER, {"shop_id": shop_id, "customer_id": customer_id})

    async def append_entry(
        self, shop_id: str, customer_id: str, kind: str, points: int, reference: str
    ) -> int | None:
        """Append a ledger entry and move the balance with it; returns the new balance, or None when
        this reference was already booked (nothing changed)."""
        entry = {"shop_id": shop_id, "customer_id": customer_id, "kind": kind, "points": points}
        if await self.session.scalar(_BOOK_ENTRY, {**entry, "reference": reference}) is None:
            return None
        return await self.session.scalar(
            _MOVE_BALANCE,
            {
                "shop_id": shop_id,
                "customer_id": customer_id,
                "points_balance": points,
                "lifetime_earned": max(points, 0),
            },
        )

    async def award_imported(self, shop_id: str, table: str) -> None:
        """1 point per whole yuan kept on each imported completed order (the live rule,
        `ledger.points_for_order`), booked once per order, balances moved in the same statement."""
        await self.session.execute(
            text(
                f"""
                WITH booked AS (
                    INSERT INTO loyalty.points_ledger (shop_id, customer_id, kind, points, reference)
                    SELECT :shop, customer_id, 'earn', (paid_fen - refunded_fen) / 100, 'order:' || id
                    FROM {table}
                    WHERE status = 'completed' AND (paid_fen - refunded_fen) >= 100
                    ON CONFLICT (shop_id, kind, reference) DO NOTHING
                    RETURNING customer_id, points
                ), per_member AS (
                    SELECT customer_id, sum(points) AS points FROM booked GROUP BY customer_id
                )
                INSERT INTO loyalty.members AS m (shop_id, customer_id, points_balance, lifetime_earned)
                SELECT :shop, customer_id, points, points FROM per_member
                ON CONFLICT (shop_id, customer_id) DO UPDATE SET
                    points_balance = m.points_balance + excluded.points_balance,
                    lifetime_earned = m.lifetime_earned + excluded.lifetime_earned,
                    updated_at = now()
                """  # noqa: S608 - the table name is ours, values are bound
            ),
            {"shop": shop_id},
        )

    async def fold(self, shop_id: str, source: str, target: str) -> None:
        """`customer.merged`: the source member's ledger and balance move to the target member."""
        params = {"shop": shop_id, "source": source, "target": target}
        await self.session.execute(
            text(
                "UPDATE loyalty.points_ledger SET customer_id = :target "
                "WHERE shop_id = :shop AND customer_id = :source"
            ),
            params,
        )
        await self.session.execute(
            text(
                """
                WITH gone AS (
                    DELETE FROM loyalty.members WHERE shop_id = :shop AND customer_id = :source
                    RETURNING points_balance, lifetime_earned
                )
                INSERT INTO loyalty.members AS m (shop_id, customer_id, points_balance, lifetime_earned)
                SELECT :shop, :target, points_balance, lifetime_earned FROM gone
                ON CONFLICT (shop_id, customer_id) DO UPDATE SET
                    points_balance = m.points_balance + excluded.points_balance,
                    lifetime_earned = m.lifetime_earned + excluded.lifetime_earned,
                    updated_at = now()
                """
            ),
            params,
        )
