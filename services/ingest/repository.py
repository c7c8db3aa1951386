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

from services.ingest.models import CustomerIdentity, Order, plumbing

_identities = CustomerIdentity.__table__
_orders = Order.__table__

_FIND_IDENTITY = select(_identities.c.customer_id).where(
    _identities.c.shop_id == bindparam("shop_id"),
    _identities.c.channel == bindparam("channel"),
    _identities.c.external_id == bindparam("external_id"),
)
# What a new order writes: its row and the event announcing it, in one round trip; neither when an order
# with the same source id exists (then the caller updates it). The order's columns are bound by their
# names, the event's as `Outbox.row` names them with `event_` in front (`shop_id` is shared).
ORDER_COLUMNS = (
    "id", "shop_id", "channel", "external_order_id", "customer_id", "import_id", "status", "currency",
    "total_fen", "paid_fen", "refunded_fen", "refunds", "item_count", "items", "coupon_codes", "buyer_nick",
    "receiver", "placed_at", "paid_at", "shipped_at", "completed_at", "source_modified_at",
)  # fmt: skip
_inserted = (
    insert(_orders)
    .values({name: bindparam(name, type_=_orders.c[name].type) for name in ORDER_COLUMNS})
    .on_conflict_do_nothing()
    .returning(_orders.c.id)
    .cte("inserted")
)
_outbox = plumbing.outbox
_EVENT_COLUMNS = ("event_id", "topic", "key", "event_type", "envelope")
_announced = (
    insert(_outbox)
    .from_select(
        [*_EVENT_COLUMNS, "shop_id"],
        select(
            *(bindparam(f"event_{name}", type_=_outbox.c[name].type) for name in _EVENT_COLUMNS),
            bindparam("shop_id", type_=_outbox.c.shop_id.type),
        ).select_from(_inserted),
    )
    .cte("announced")
)
_INSERT_ANNOUNCED = select(_inserted.c.id).add_cte(_announced)
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

    async def insert_announced(self, values: dict[str, Any], event: dict[str, Any]) -> bool:
        """Insert a new order (`ORDER_COLUMNS`) with the outbox row announcing it (`Outbox.row`'s values,
        of the order's shop); False, and neither written, when one with the same source id exists (or a
        concurrent request inserted it first)."""
        params = values | {f"event_{name}": event[name] for name in _EVENT_COLUMNS}
        return await self.session.scalar(_INSERT_ANNOUNCED, params) is not None
