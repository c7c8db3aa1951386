"""Every query of the ingest service. All of them are scoped by shop.

Hot statements are built once at import and take their values as bound parameters: building and
coercing a statement per order cost more CPU than executing it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.ingest.models import CustomerIdentity, Order

_identities = CustomerIdentity.__table__
_orders = Order.__table__

_FIND_IDENTITY = select(_identities.c.customer_id).where(
    _identities.c.shop_id == bindparam("shop_id"),
    _identities.c.channel == bindparam("channel"),
    _identities.c.external_id == bindparam("external_id"),
)
_INSERT_ORDER = insert(_orders).on_conflict_do_nothing().returning(_orders.c.id)
_LOCK_BY_SOURCE = (
    select(Order)
    .where(
        Order.shop_id == bindparam("shop_id"),
        Order.channel == bindparam("channel"),
        Order.external_order_id == bindparam("external_order_id"),
    )
    .with_for_update()
)
_GET_ORDER = select(Order).where(Order.shop_id == bindparam("shop_id"), Order.id == bindparam("order_id"))


class CustomerRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def find(self, shop_id: str, channel: str, external_id: str) -> str | None:
        return await self.session.scalar(
            _FIND_IDENTITY, {"shop_id": shop_id, "channel": channel, "external_id": external_id}
        )


class OrderRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, shop_id: str, order_id: str) -> Order | None:
        return await self.session.scalar(_GET_ORDER, {"shop_id": shop_id, "order_id": order_id})

    async def page(
        self,
        shop_id: str,
        *,
        limit: int,
        customer_id: str | None = None,
        status: str | None = None,
        since: datetime | None = None,
        after: tuple[datetime, str] | None = None,
    ) -> list[Order]:
        """Newest first by placement time; keyset pagination so deep pages cost what the first does."""
        query = select(Order).where(Order.shop_id == shop_id)
        if customer_id is not None:
            query = query.where(Order.customer_id == customer_id)
        if status is not None:
            query = query.where(Order.status == status)
        if since is not None:
            query = query.where(Order.placed_at >= since)
        if after is not None:
            query = query.where(tuple_(Order.placed_at, Order.id) < tuple_(*after))
        query = query.order_by(Order.placed_at.desc(), Order.id.desc()).limit(limit)
        return list((await self.session.scalars(query)).all())

    async def lock_by_source(self, shop_id: str, channel: str, external_order_id: str) -> Order | None:
        return await self.session.scalar(
            _LOCK_BY_SOURCE, {"shop_id": shop_id, "channel": channel, "external_order_id": external_order_id}
        )

    async def insert_if_absent(self, values: dict[str, Any]) -> bool:
        """Insert a new order; False when one with the same source id exists (or a concurrent request
        inserted it first)."""
        return await self.session.scalar(_INSERT_ORDER, values) is not None
