"""Every query of the segmentation service. All of them are scoped by shop."""

from __future__ import annotations

from sqlalchemy import func, literal, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.contracts.orders import PAID_STATUSES, OrderEventPayload
from services.segmentation.models import Profile, ProfileOrder


class ProfileRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, shop_id: str, customer_id: str) -> Profile | None:
        return await self.session.scalar(
            select(Profile).where(Profile.shop_id == shop_id, Profile.customer_id == customer_id)
        )

    async def record_order(self, shop_id: str, order: OrderEventPayload) -> None:
        """Upsert the order's projection; an event older than what is stored changes nothing."""
        stmt = insert(ProfileOrder).values(
            shop_id=shop_id,
            order_id=order.order_id,
            customer_id=order.customer_id,
            status=order.status.value,
            paid_fen=order.paid_fen,
            refunded_fen=order.refunded_fen,
            placed_at=order.placed_at,
            source_modified_at=order.source_modified_at,
        )
        await self.session.execute(
            stmt.on_conflict_do_update(
                index_elements=[ProfileOrder.shop_id, ProfileOrder.order_id],
                set_={
                    c: stmt.excluded[c]
                    for c in ("status", "paid_fen", "refunded_fen", "placed_at", "source_modified_at")
                },
                where=ProfileOrder.source_modified_at <= stmt.excluded.source_modified_at,
            )
        )

    async def recompute(self, shop_id: str, customer_id: str) -> None:
        """Set-based recomputation of one profile's aggregates from its orders: always exact, whatever
        order events arrived in."""
        paid = [s.value for s in PAID_STATUSES]
        aggregate = select(
            literal(shop_id).label("shop_id"),
            literal(customer_id).label("customer_id"),
            func.count().label("orders_count"),
            func.coalesce(func.sum(ProfileOrder.paid_fen - ProfileOrder.refunded_fen), 0).label(
                "total_spent_fen"
            ),
            func.min(ProfileOrder.placed_at).label("first_order_at"),
            func.max(ProfileOrder.placed_at).label("last_order_at"),
        ).where(
            ProfileOrder.shop_id == shop_id,
            ProfileOrder.customer_id == customer_id,
            ProfileOrder.status.in_(paid),
        )
        stmt = insert(Profile).from_select(
            ["shop_id", "customer_id", "orders_count", "total_spent_fen", "first_order_at", "last_order_at"],
            aggregate,
        )
        await self.session.execute(
            stmt.on_conflict_do_update(
                index_elements=[Profile.shop_id, Profile.customer_id],
                set_={
                    c: stmt.excluded[c]
                    for c in ("orders_count", "total_spent_fen", "first_order_at", "last_order_at")
                }
                | {"updated_at": func.now()},
            )
        )
