"""Every query of the ingest service. All of them are scoped by shop."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.kit.ids import new_id
from services.ingest.models import Customer, CustomerIdentity, Order


class CustomerRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def resolve(self, shop_id: str, channel: str, external_id: str) -> tuple[str, bool]:
        """The customer id for a channel identity, creating the customer on first sight.

        Concurrent first orders of one buyer race on the identity's primary key; the loser reads the
        winner's row, so a buyer never gets two ids.
        """
        candidate = new_id("cus")
        claimed = await self.session.scalar(
            insert(CustomerIdentity)
            .values(shop_id=shop_id, channel=channel, external_id=external_id, customer_id=candidate)
            .on_conflict_do_nothing()
            .returning(CustomerIdentity.customer_id)
        )
        if claimed is not None:
            await self.session.execute(insert(Customer).values(shop_id=shop_id, id=candidate))
            return candidate, True
        existing = await self.session.scalar(
            select(CustomerIdentity.customer_id).where(
                CustomerIdentity.shop_id == shop_id,
                CustomerIdentity.channel == channel,
                CustomerIdentity.external_id == external_id,
            )
        )
        assert existing is not None
        return existing, False


class OrderRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, shop_id: str, order_id: str) -> Order | None:
        return await self.session.scalar(select(Order).where(Order.shop_id == shop_id, Order.id == order_id))

    async def lock_by_source(self, shop_id: str, channel: str, external_order_id: str) -> Order | None:
        return await self.session.scalar(
            select(Order)
            .where(
                Order.shop_id == shop_id,
                Order.channel == channel,
                Order.external_order_id == external_order_id,
            )
            .with_for_update()
        )

    async def insert_if_absent(self, values: dict[str, Any]) -> bool:
        """Insert a new order; False when a concurrent request inserted the same source order first."""
        inserted = await self.session.scalar(
            insert(Order).values(**values).on_conflict_do_nothing().returning(Order.id)
        )
        return inserted is not None
