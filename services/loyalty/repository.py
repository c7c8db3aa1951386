"""Every query of the loyalty service. All of them are scoped by shop."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.loyalty.models import Member, PointsEntry


class MemberRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, shop_id: str, customer_id: str) -> Member | None:
        return await self.session.scalar(
            select(Member).where(Member.shop_id == shop_id, Member.customer_id == customer_id)
        )

    async def append_entry(
        self, shop_id: str, customer_id: str, kind: str, points: int, reference: str
    ) -> bool:
        """Append a ledger entry and move the balance with it; False if this reference was already booked."""
        booked = await self.session.scalar(
            insert(PointsEntry)
            .values(shop_id=shop_id, customer_id=customer_id, kind=kind, points=points, reference=reference)
            .on_conflict_do_nothing()
            .returning(PointsEntry.id)
        )
        if booked is None:
            return False
        earned = max(points, 0)
        stmt = insert(Member).values(
            shop_id=shop_id, customer_id=customer_id, points_balance=points, lifetime_earned=earned
        )
        await self.session.execute(
            stmt.on_conflict_do_update(
                index_elements=[Member.shop_id, Member.customer_id],
                set_={
                    "points_balance": Member.points_balance + points,
                    "lifetime_earned": Member.lifetime_earned + earned,
                    "updated_at": stmt.excluded.updated_at,
                },
            )
        )
        return True
